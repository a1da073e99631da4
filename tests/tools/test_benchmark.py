"""tools/benchmark.py on a tiny shapes PP-YOLO Tiny (96 px, 8 eval images, 1 repeat): a table row
per backend with numbers or the reason it did not run, the chart PNG, mAP equal across the FP32
backends, latency only with --model_dir, one error line (exit 2) for bad input."""
import json
import os
import subprocess

import cv2
import pytest

from tests.deploy.conftest import lite_python, our_cfg  # noqa: F401  (the session fixture)
from tests.deploy.helpers import PYTHON, REPO

pytestmark = pytest.mark.slow  # exports, quantizes, converts: ~40 s on 2 cores

SIZE = 96
TITLES = {"paddle": "Paddle Inference FP32", "paddle_mkldnn": "Paddle Inference FP32 oneDNN",
          "paddle_int8": "Paddle Inference INT8 oneDNN", "onnxruntime": "ONNX Runtime FP32",
          "lite_fp32": "Paddle Lite x86 FP32", "lite_int8": "Paddle Lite x86 INT8"}


def tool(*args, expect: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([PYTHON, "tools/benchmark.py", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == expect, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def table_rows(stdout: str) -> dict:
    """backend title -> the cells of its table row."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in TITLES.values():
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def shapes(tmp_path_factory, request):
    """The demo config on a small generated set, weights whose scores spread (zero head biases),
    and the tool's run with -c on every backend (the Lite ones when the Lite venv is there);
    -> (cfg, overrides, output dir, the tool's process, why Lite is absent or None)."""
    import paddle

    import ppdet_lite
    tmp = tmp_path_factory.mktemp("bench")
    opts = [f"{key}.{k}={v}" for key in ("TrainDataset", "EvalDataset")
            for k, v in (("dataset_dir", tmp / "shapes"), ("num_images", 8))]
    opts += ["YOLOv3Head.obj_bias_init=0.0", "YOLOv3Head.cls_bias_init=0.0"]
    cfg = our_cfg("ppyolo_tiny_shapes", SIZE, opts)
    paddle.seed(0)
    weights = str(tmp / "tiny.pdparams")
    paddle.save(ppdet_lite.build_model(cfg).state_dict(), weights)
    opts += [f"TestReader.inputs_def.image_shape=[3,{SIZE},{SIZE}]", f"weights={weights}"]
    backends, no_lite = "paddle,paddle_mkldnn,paddle_int8,onnxruntime", None
    try:
        request.getfixturevalue("lite_python")
        backends += ",lite_fp32,lite_int8"
    except pytest.skip.Exception as e:  # no Lite venv: its test says why
        no_lite = str(e)
    out = str(tmp / "out")
    proc = tool("-c", "configs/ppyolo_tiny_shapes.yml", "-o", *opts, "--output_dir", out,
                "--warmup", "1", "--repeats", "1", "--calib_images", "4", "--backends", backends)
    return cfg, opts, out, proc, no_lite


def test_a_row_per_backend_with_numbers_and_the_chart(shapes):
    cfg, _, out, proc, no_lite = shapes
    rows = table_rows(proc.stdout)
    names = ["paddle", "paddle_mkldnn", "paddle_int8", "onnxruntime"] + \
        ([] if no_lite else ["lite_fp32", "lite_int8"])
    assert list(rows) == [TITLES[b] for b in names], proc.stdout
    for title, cells in rows.items():
        pre, infer, post, total, ap, ap50 = map(float, cells[:6])
        assert 0 < infer and 0 < pre and 0 < post and total == pytest.approx(pre + infer + post,
                                                                             abs=0.02), title
        assert 0 <= ap <= ap50 <= 1, title
    saved = {r["backend"]: r for r in json.load(open(os.path.join(out, "benchmark.json")))}
    fp32 = saved[TITLES["paddle"]]
    assert fp32["img_num"] == 8 and fp32["AP50"] > 0  # spread scores: some boxes hit
    # the mAP of the training-side path (EvalReader batches through Paddle Inference)
    from ppdet_lite.slim.quant import evaluate_inference_model
    ref = evaluate_inference_model(os.path.join(out, "fp32", "ppyolo_tiny_shapes"), cfg)
    assert fp32["AP"] == pytest.approx(ref["AP"], rel=0.05, abs=1e-4)
    for b in ("paddle_mkldnn", "onnxruntime"):  # the same FP32 model: the same detections
        assert saved[TITLES[b]]["AP"] == pytest.approx(fp32["AP"], rel=0.05, abs=1e-4), b
    assert "NMS inside the model (multiclass_nms3)" in proc.stdout
    assert "1 warm-up passes, 1 inference runs per image" in proc.stdout
    chart = cv2.imread(os.path.join(out, "benchmark.png"))
    assert chart is not None and chart.shape == (480, 640, 3) and chart.min() < 255


def test_lite_fp32_gives_the_map_of_paddle_inference(shapes):
    _, _, out, proc, no_lite = shapes
    if no_lite:
        pytest.skip(no_lite)
    saved = {r["backend"]: r for r in json.load(open(os.path.join(out, "benchmark.json")))}
    assert saved[TITLES["lite_fp32"]]["AP"] == pytest.approx(saved[TITLES["paddle"]]["AP"],
                                                             rel=0.05, abs=1e-4)
    assert saved[TITLES["lite_int8"]]["note"] == "PTQ; threads = OMP_NUM_THREADS"


def test_model_dir_alone_measures_latency_and_says_why_int8_cannot_run(shapes):
    out = shapes[2]
    proc = tool("--model_dir", os.path.join(out, "fp32", "ppyolo_tiny_shapes"), "--output_dir",
                os.path.join(out, "latency"), "--warmup", "0", "--repeats", "2",
                "--backends", "paddle,paddle_int8")
    rows = table_rows(proc.stdout)
    assert float(rows[TITLES["paddle"]][1]) > 0 and rows[TITLES["paddle"]][4:6] == ["n/a", "n/a"]
    assert rows[TITLES["paddle_int8"]][:6] == ["-"] * 6
    assert rows[TITLES["paddle_int8"]][6] == "not run: needs -c with a TrainDataset for calibration images"
    assert "1 image(s) (synthetic, no mAP)" in proc.stdout
    assert cv2.imread(os.path.join(out, "latency", "benchmark.png")) is not None


@pytest.mark.parametrize("args, message", [
    (["--model_dir", "/nonexistent"], "error: --model_dir /nonexistent: no model.pdmodel"),
    (["--model_dir", ".", "--backends", "paddle,tensorrt"], "error: --backends 'paddle,tensorrt'"),
    (["--model_dir", ".", "--repeats", "0"], "error: --repeats 0: must be >= 1"),
    ([], "error: give -c CONFIG"),
])
def test_bad_input_is_one_error_line(args, message):
    proc = tool(*args, expect=2)
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith(message), proc.stderr

"""Paddle Lite: convert to .nb (arm and x86), run the x86 one in the Lite Python runtime (its own
Python 3.10 venv, a subprocess) and compare with Paddle Inference."""
import zlib  # noqa: F401  (before paddle)
import json
import os
import sys

import numpy as np
import pytest

from .helpers import REPO, run, same_boxes

sys.path.insert(0, os.path.join(REPO, "deploy", "lite"))
import convert as lite  # noqa: E402


@pytest.fixture(scope="module")
def lite_python():
    """The Lite venv's interpreter (created once per machine, then cached)."""
    import shutil
    if not shutil.which("paddle_lite_opt") and lite.find_python310() is None:
        pytest.skip("Python 3.10 is absent (paddlelite wheels stop at cp310): no Lite runtime")
    try:
        return os.path.join(lite.lite_venv(), "bin", "python")
    except lite.LiteUnavailable as e:
        pytest.skip(f"Paddle Lite venv unavailable: {e}")


def test_x86_nb_matches_paddle_inference(ours_tiny, image_files, lite_python, run_boxes, work):
    out = lite.convert(ours_tiny.dir, "x86", str(work / "lite_x86"))
    assert {"model.nb", "infer_cfg.json", "det_runtime_config.json"} <= set(os.listdir(out))
    result = str(work / "lite_x86.json")
    run([lite_python, "deploy/lite/run_lite.py", "--lite_dir", out, "--threshold", "0",
         "--save_json", result, "--image_file", *image_files])
    for item, path in zip(json.load(open(result)), image_files):
        ref = run_boxes(ours_tiny.dir, path)
        assert len(ref) > 10
        same_boxes(ref, np.array(item["boxes"]), score_tol=1e-4, box_tol=1e-2)


def test_arm_nb_and_runtime_config(ppdet_tiny, lite_python, work):
    out = lite.convert(ppdet_tiny, "arm", str(work / "lite_arm"), threshold=0.3, cpu_threads=4)
    assert os.path.getsize(os.path.join(out, "model.nb")) > 1e6
    cfg = json.load(open(os.path.join(out, "det_runtime_config.json")))
    assert cfg == {"model_dir_det": out, "batch_size_det": 1, "threshold_det": 0.3,
                   "image_file": "", "image_dir": "", "run_benchmark": False, "cpu_threads": 4}
    infer_cfg = json.load(open(os.path.join(out, "infer_cfg.json")))
    assert [op["type"] for op in infer_cfg["Preprocess"]] == ["Resize", "NormalizeImage",
                                                              "Permute"]


def test_flatten_is_refused_for_x86(tmp_path):
    import paddle
    spec = [paddle.static.InputSpec([1, 3, 4, 4], "float32")]
    layer = paddle.nn.Flatten()
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True),
                    str(tmp_path / "model"), input_spec=spec)
    (tmp_path / "infer_cfg.yml").write_text("arch: YOLO\n")
    with pytest.raises(ValueError, match="flatten_contiguous_range.*reshape"):
        lite.convert(str(tmp_path), "x86")

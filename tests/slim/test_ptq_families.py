"""Post-training quantization of YOLOv4-tiny and EfficientDet-D0 (configs/yolov4_tiny.yml,
configs/efficientdet_d0.yml) end to end, as for PP-YOLO Tiny (test_quant.py, test_lite.py):
``slim/post_quant.py`` on the random BN-calibrated weights of tests/deploy/test_families_deploy.py
at its small inputs (160 / 128 px), calibrated on four generated images, writes the FP32 and int8
inference models and their Paddle Lite x86 ``.nb``. Paddle Inference's int8 candidate boxes
match the FP32 ones, and the int8 ``.nb``'s match Paddle Inference's int8 ones.

Compared as test_quant.py does: exported without NMS (``export.nms: false``), every image's 50
best FP32 candidates against the same candidates of the other model (NMS would turn small score
changes into other boxes). Random nets amplify rounding noise layer by layer, trained ones do not:
YOLOv4-tiny (no residual connections) gets BN shifts U(0.2, 0.4) (most units on leaky_relu's
linear side; with the default U(-0.1, 0.1) 1% noise on its first conv's weights grows to 4% at
the neck outputs, with U(0.2, 0.4) to 0.6%); EfficientDet-D0 keeps the default weights.
Activations are calibrated with abs-max: a percentile of four images clips real values.
"""
import os
import re
import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from ppdet_lite.export import lite
from ppdet_lite.export.inference import inference_predictor, run_inference
from ppdet_lite.export.program_edit import program_ops

from ..deploy.conftest import lite_python  # noqa: F401  (the Lite venv fixture)
from ..deploy.helpers import REPO, calibration_image, run
from ..deploy.test_families_deploy import MODELS, make_weights, reader
from ..deploy.test_lite import lite_run
from .helpers import compare_candidates

SHIFTS = {"yolov4_tiny": (0.2, 0.4), "efficientdet_d0": (-0.1, 0.1)}  # BN shifts (see above)
REPORT = {}  # (model, what) -> line, printed at the end


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    for (name, what), line in sorted(REPORT.items()):
        print(f"\n{name:16s} {what:28s} {line}")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Two test images (as tests/deploy's) and a calibration folder: those two and two more."""
    tmp = tmp_path_factory.mktemp("ptq_families")
    os.makedirs(tmp / "calib")
    images = []
    for seed, (h, w) in enumerate([(240, 320), (200, 300), (220, 300), (240, 280)]):
        im = calibration_image(h, w, seed)[:, :, ::-1]
        cv2.imwrite(str(tmp / "calib" / f"img{seed}.png"), im)
        if seed < 2:
            images.append(str(tmp / f"img{seed}.png"))
            cv2.imwrite(images[-1], im)
    return SimpleNamespace(dir=tmp, images=images)


@pytest.fixture(scope="module", params=list(SHIFTS))
def ptq(request, work):
    """``slim/post_quant.py --lite x86`` on one model: namespace(name, fp32, int8 dirs, their
    .nb files, the tool's output, the test images' inputs)."""
    from ppdet_lite.deploy.predictor import DetectorPredictor

    name, size = request.param, MODELS[request.param]
    weights = str(work.dir / f"{name}.pdparams")
    make_weights(name, size, weights, work.dir, shift=SHIFTS[name])
    test_reader = reader(name, size)
    out = str(work.dir / "inference")
    proc = run([sys.executable, "slim/post_quant.py", "-c", f"configs/{name}.yml",
                "--slim_config", f"configs/slim/post_quant/{name}_ptq.yml",
                "--calib", str(work.dir / "calib"), "--no_eval", "--lite", "x86",
                "--output_dir", out, "-o", f"weights={weights}", "use_gpu=False", *test_reader,
                "EvalReader.sample_transforms=" + test_reader[1].split("=", 1)[1],
                "EvalReader.batch_size=2", "PTQ.quant_batch_num=2", "export.nms=False",
                "PTQ.ptq_config.activation_quantizer=AbsmaxQuantizer"], timeout=600)
    fp32, int8 = os.path.join(out, f"{name}_ptq_fp32"), os.path.join(out, f"{name}_ptq")
    det = DetectorPredictor(fp32)
    return SimpleNamespace(name=name, fp32=fp32, int8=int8, output=proc.stdout + proc.stderr,
                           nb={d: os.path.join(d, "lite_x86", "model.nb") for d in (fp32, int8)},
                           inputs=[det.preprocess([p]) for p in work.images], tmp=work.dir)


def candidates(ref, out) -> tuple:
    """(IoU, |score diff|, same best class) of each image's 50 best ``ref`` candidates."""
    parts = [compare_candidates(r, o, top=50, skip_empty=True) for r, o in zip(ref, out)]
    return tuple(np.concatenate([p[k] for p in parts], axis=None) for k in range(3))


def judge(name: str, what: str, ious, dscore, same, min_iou: float, mean_iou: float,
          same_class: float) -> None:
    """test_quant.py's rule (IoU min / mean, mean |score diff| < 0.01, the same best class for
    most candidates) at the given bounds; the numbers go to the report."""
    REPORT[(name, what)] = (f"IoU min {ious.min():.3f} mean {ious.mean():.3f}, |score diff| mean "
                            f"{dscore.mean():.4f} max {dscore.max():.3f}, same class {same.mean():.2f}")
    assert ious.min() > min_iou and ious.mean() > mean_iou, REPORT[(name, what)]
    assert dscore.mean() < 0.01 and same.mean() >= same_class, REPORT[(name, what)]


@pytest.mark.slow  # EfficientDet-D0's calibration alone takes 80-130 s (PaddleSlim's passes)
def test_post_quant_writes_int8_models_and_nb(ptq):
    table = ptq.output[ptq.output.index("\nmodel "):]
    rows = re.findall(r"\n(FP32|PTQ INT8) +nan +nan +([\d.]+) +([\d.]+) \((\d+) B\)", table)
    assert len(rows) == 2, table
    (_, fp32_mib, _, fp32_nb), (_, int8_mib, _, int8_nb) = rows
    assert float(int8_mib) < 0.4 * float(fp32_mib)  # int8 weights
    assert {"quantize_linear", "dequantize_linear"} <= program_ops(os.path.join(ptq.int8, "model.pdmodel"))
    assert all(os.path.isfile(nb) for nb in ptq.nb.values())
    REPORT[(ptq.name, "sizes")] = (f"model files FP32 {fp32_mib} MiB, INT8 {int8_mib} MiB; x86 .nb "
                                   f"FP32 {int(fp32_nb):,} B, INT8 {int(int8_nb):,} B")


@pytest.mark.slow
def test_int8_candidates_match_fp32_in_paddle_inference(ptq):
    ref = [run_inference(inference_predictor(ptq.fp32), i) for i in ptq.inputs]
    out = [run_inference(inference_predictor(ptq.int8), i) for i in ptq.inputs]
    assert max(float(r[1].max()) for r in ref) > 0.3  # confident boxes to compare
    judge(ptq.name, "int8 vs fp32 (Inference)", *candidates(ref, out), min_iou=0.7, mean_iou=0.93,
          same_class=0.95)


@pytest.mark.slow
def test_lite_x86_int8_nb_matches_paddle_inference_int8(ptq, lite_python):  # noqa: F811
    """The .nb that slim/post_quant.py --lite x86 wrote (lite_x86_int8.py's workarounds applied)
    gives Paddle Inference's int8 candidates; converted as is, it does not (YOLOv4-tiny: wrong
    boxes, EfficientDet-D0: a segfault). Lite rounds more than Paddle Inference (every int8
    conv's output to its calibrated grid, 7-bit weights against the int16 saturation), hence
    bounds below the int8-vs-FP32 ones."""
    ref = [run_inference(inference_predictor(ptq.int8), i) for i in ptq.inputs]
    lite_dir = os.path.dirname(ptq.nb[ptq.int8])
    out = [lite_run(lite_python, lite_dir, i, ptq.tmp / f"{ptq.name}_{k}")
           for k, i in enumerate(ptq.inputs)]
    judge(ptq.name, "int8 .nb (Lite x86) vs int8", *candidates(ref, out), min_iou=0.5,
          mean_iou=0.9, same_class=0.9)

    as_is = lite.convert(ptq.int8, "x86", str(ptq.tmp / f"{ptq.name}_as_is"), x86_int8_fixes=False)
    np.savez(str(ptq.tmp / f"{ptq.name}_as_is.npz"), **ptq.inputs[0])
    proc = subprocess.run([lite_python, "deploy/lite/run_lite.py", "--lite_dir", as_is, "--inputs_npz",
                           str(ptq.tmp / f"{ptq.name}_as_is.npz"), "--outputs_npz",
                           str(ptq.tmp / f"{ptq.name}_as_is_out.npz")], cwd=REPO, capture_output=True)
    if proc.returncode == 0:
        with np.load(str(ptq.tmp / f"{ptq.name}_as_is_out.npz")) as f:
            ious = candidates(ref[:1], [[f[k] for k in f.files]])[0]
        REPORT[(ptq.name, "converted as is")] = f"IoU mean {ious.mean():.3f}"
        assert ious.mean() < 0.5, "Lite's x86 int8 kernels now give these boxes unaided"
    else:
        REPORT[(ptq.name, "converted as is")] = f"exit {proc.returncode}"
        assert proc.returncode == -11, proc.stderr[-2000:]  # SIGSEGV


def test_unshared_filters_fold_their_own_batch_norm(tmp_path):
    """One conv filter shared by two convs, each with its own BatchNorm (as EfficientDet's head
    over its levels): PTQ's BatchNorm fold gives each conv its copy, so the int8 model computes
    what the FP32 one does (folded in place into the one filter, both would be wrong)."""
    import paddle
    from paddle import nn

    from ppdet_lite.slim import PTQ

    class Shared(nn.Layer):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2D(8, 8, 3, padding=1)
            self.bns = nn.LayerList([nn.BatchNorm2D(8) for _ in range(2)])
            for k, bn in enumerate(self.bns):  # far apart, so that a wrong fold shows
                bn._mean.set_value(np.full([8], 0.5 * k, "float32"))
                bn._variance.set_value(np.full([8], 4.0 ** k, "float32"))

        def forward(self, x):
            return paddle.concat([bn(self.conv(x)) for bn in self.bns], 1)

    paddle.seed(0)
    layer = Shared()
    layer.eval()
    spec = [paddle.static.InputSpec([1, 8, 8, 8], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True),
                    str(tmp_path / "fp32" / "model"), input_spec=spec)
    (tmp_path / "fp32" / "infer_cfg.yml").write_text("arch: YOLO\n")
    x = {"x": np.random.RandomState(0).uniform(-1, 1, [1, 8, 8, 8]).astype("float32")}
    int8 = PTQ({"activation_quantizer": "AbsmaxQuantizer"}, quant_batch_num=1).quantize(
        str(tmp_path / "fp32"), str(tmp_path / "int8"), [x])
    ref = run_inference(inference_predictor(str(tmp_path / "fp32")), x)[0]
    out = run_inference(inference_predictor(int8), x)[0]
    assert "batch_norm" not in program_ops(os.path.join(int8, "model.pdmodel"))  # folded
    err = np.sqrt(((out - ref) ** 2).mean() / (ref ** 2).mean())
    assert err < 0.03, err  # int8 rounding only (both folds in one filter: 0.43)


def test_efficientdet_without_nms_gives_every_candidate():
    """``export.nms: false`` on EfficientDet: every anchor's decoded box and class scores; the
    post-processed model's best box is one of them, same score and coordinates."""
    import paddle

    import ppdet_lite

    from ..deploy.conftest import our_cfg

    paddle.seed(0)
    model = ppdet_lite.build_model(our_cfg("efficientdet_d0", 128))
    model.eval()
    inputs = {"image": paddle.randn([1, 3, 128, 128]), "im_shape": paddle.to_tensor([[128., 128.]]),
              "scale_factor": paddle.to_tensor([[0.5, 0.4]])}
    with paddle.no_grad():
        rows = model(inputs)["bbox"].numpy()
        model.exclude_nms = True
        out = model(inputs)
    boxes, scores = out["boxes"].numpy()[0], out["scores"].numpy()[0]
    assert boxes.shape == (9 * (16 ** 2 + 8 ** 2 + 4 ** 2 + 2 ** 2 + 1), 4)  # levels 3-7
    best = rows[rows[:, 1].argmax()]
    assert scores.shape == (90, len(boxes)) and abs(scores.max() - best[1]) < 1e-6
    same = (np.abs(scores[int(best[0])] - best[1]) < 1e-6) & \
        (np.abs(boxes - best[2:]).max(1) < 1e-3)
    assert same.any()


@pytest.mark.slow  # converts and runs twice in the Lite venv
def test_bias_less_int8_depthwise_conv_crashes_lite_x86_unless_given_a_zero_bias(tmp_path,
                                                                                 lite_python):  # noqa: F811
    """Lite 2.13 x86: an int8 depthwise conv without a bias segfaults (gdb: Conv2dCompute<int8>
    ::PrepareForRun -> gemm_s8u8 repack_bias; EfficientDet's BiFPN separable convs have none);
    with the zero bias of lite_x86_int8.zero_bias_depthwise it runs and agrees with Paddle
    Inference. Inputs <= 0, so that the int16 saturation bug stays out of it."""
    import paddle
    from paddle import nn

    from ppdet_lite.export import lite_x86_int8
    from ppdet_lite.export.program_edit import SavedProgram
    from ppdet_lite.slim import PTQ

    paddle.seed(0)
    layer = nn.Conv2D(32, 32, 3, padding=1, groups=32, bias_attr=False)
    layer.eval()
    spec = [paddle.static.InputSpec([1, 32, 8, 8], "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True),
                    str(tmp_path / "fp32" / "model"), input_spec=spec)
    (tmp_path / "fp32" / "infer_cfg.yml").write_text("arch: YOLO\n")
    rng = np.random.RandomState(0)
    batches = [{"x": rng.uniform(-1, 0, [1, 32, 8, 8]).astype("float32")} for _ in range(2)]
    int8 = PTQ({"activation_quantizer": "AbsmaxQuantizer"}, quant_batch_num=2).quantize(
        str(tmp_path / "fp32"), str(tmp_path / "int8"), batches)
    with SavedProgram(int8) as prog:
        assert lite_x86_int8.zero_bias_depthwise(prog) == 1
        fixed = prog.save(str(tmp_path / "fixed"), strip_attrs=False)  # observers stay observers
    np.savez(str(tmp_path / "in.npz"), **batches[0])

    def lite_exit(model_dir, name):
        nb = lite.convert(model_dir, "x86", str(tmp_path / name), x86_int8_fixes=False)
        return subprocess.run([lite_python, "deploy/lite/run_lite.py", "--lite_dir", nb,
                               "--inputs_npz", str(tmp_path / "in.npz"), "--outputs_npz",
                               str(tmp_path / f"{name}.npz")], cwd=REPO, capture_output=True).returncode

    assert lite_exit(int8, "as_is") == -11, "Lite's x86 int8 depthwise conv now runs without a bias"
    assert lite_exit(fixed, "fixed") == 0
    ref = run_inference(inference_predictor(int8), batches[0])[0]
    assert np.array_equal(ref, run_inference(inference_predictor(fixed), batches[0])[0])  # + 0
    with np.load(str(tmp_path / "fixed.npz")) as f:
        out = f[f.files[0]]
    assert np.abs(out - ref).max() < 3 * np.abs(ref).max() / 127  # a few int8 steps

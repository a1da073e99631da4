"""Paddle Lite: convert to .nb (arm and x86), run the x86 one in the Lite Python runtime (its own
Python 3.10 venv, a subprocess) and compare with Paddle Inference; int8 models: the x86 kernel
bugs and their workarounds, boxes against FP32, the size of the 80-class PP-YOLO Tiny arm .nb."""
import os
import subprocess

import pytest

from ppdet_lite.export import lite
from ppdet_lite.export import lite_x86_int8 as x86_int8

from .helpers import PYTHON, REPO, check_lite_x86, run

pytestmark = pytest.mark.slow  # exports / converts / trains: the full suite runs it, -m "not slow" skips it


def test_x86_nb_of_paddledetection_tiny_matches(ppdet_tiny, image_files, lite_python, run_boxes,
                                                 work):
    check_lite_x86(ppdet_tiny, image_files, lite_python, run_boxes, str(work / "lite_ppdet"))


def test_x86_nb_of_ours_matches(ours_tiny, image_files, lite_python, run_boxes, work):
    pdmodel = os.path.join(ours_tiny.dir, "model.pdmodel")
    assert lite.all_axes_reductions(pdmodel, keep_dim=False) == [] and lite.zero_d_constants(pdmodel) == []
    score_diff, box_diff = check_lite_x86(ours_tiny.dir, image_files, lite_python, run_boxes,
                                          str(work / "lite_ours"))
    print(f"tiny lite x86 vs inference: max |score| diff {score_diff:.1e}, max coord diff "
          f"{box_diff:.1e} px")
    assert score_diff < 1e-4 and box_diff < 1e-2


class Scaled(object):
    """A one-parameter layer around ``fn`` (the Lite converter wants a params file)."""

    @staticmethod
    def save(path, fn, shape) -> str:
        import paddle

        class Layer(paddle.nn.Layer):
            def __init__(self):
                super().__init__()
                self.w = self.create_parameter([1])
                self.fn = fn

            def forward(self, x):
                return self.fn(x * self.w)

        spec = [paddle.static.InputSpec(shape, "float32", "x")]
        paddle.jit.save(paddle.jit.to_static(Layer(), input_spec=spec, full_graph=True),
                        str(path / "model"), input_spec=spec)
        (path / "infer_cfg.yml").write_text("arch: YOLO\n")
        return str(path)


def test_zero_d_reduction_constant_and_flatten_are_refused_for_x86(tmp_path):
    import paddle
    for sub in ("sum", "flat", "pow"):
        (tmp_path / sub).mkdir()
    with pytest.raises(ValueError, match="0-D.*keepdim=True"):
        lite.convert(Scaled.save(tmp_path / "sum", paddle.sum, [2, 3]), "x86")
    with pytest.raises(ValueError, match="flatten_contiguous_range.*reshape"):
        lite.convert(Scaled.save(tmp_path / "flat", paddle.flatten, [1, 3, 4, 4]), "x86")
    # x ** 0.5 puts a 0-D fill_constant into elementwise_pow (PaddleDetection's IoU-aware
    # post-process does this): the runtime aborts on it, so it is refused on every target
    with pytest.raises(ValueError, match=r"0-D constants.*elementwise_pow\.Y.*paddle\.pow"):
        lite.convert(Scaled.save(tmp_path / "pow", lambda x: x ** 0.5, [2, 3]), "arm")


def test_convert_cli_refuses_a_bad_model_dir_in_one_line(tmp_path):
    """deploy/lite/convert.py on a dir with no exported model: exit 2, one line naming the file."""
    proc = subprocess.run([PYTHON, "deploy/lite/convert.py", "--model_dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"error: {tmp_path / 'model.pdmodel'} not found: "
                                        "--model_dir must be a dir written by "
                                        "tools/export_model.py"], proc.stderr


def test_relu6_converts_and_matches(tmp_path, lite_python):
    """Paddle 2.6 saves relu6 without the threshold attribute opt requires (it aborts);
    convert.py adds threshold 6."""
    import numpy as np
    import paddle

    from ppdet_lite.export.inference import inference_predictor, run_inference

    model = Scaled.save(tmp_path, paddle.nn.functional.relu6, [1, 3, 4, 4])
    x = {"x": np.linspace(-9, 9, 48, dtype="float32").reshape(1, 3, 4, 4)}
    out = lite_run(lite_python, lite.convert(model, "x86", str(tmp_path / "x86")), x,
                   tmp_path / "relu6")[0]
    np.testing.assert_allclose(out, run_inference(inference_predictor(model), x)[0], atol=1e-6)


# --- int8 (post-training quantized) models -------------------------------------------------

def lite_run(lite_python: str, lite_dir: str, inputs: dict, path) -> list:
    """Raw outputs of the .nb in ``lite_dir`` on ``inputs`` (run_lite.py --inputs_npz)."""
    import numpy as np

    np.savez(str(path) + "_in.npz", **inputs)
    run([lite_python, "deploy/lite/run_lite.py", "--lite_dir", lite_dir, "--inputs_npz",
         str(path) + "_in.npz", "--outputs_npz", str(path) + "_out.npz"])
    with np.load(str(path) + "_out.npz") as f:
        return [f[k] for k in f.files]


@pytest.fixture(scope="module")
def shapes_ptq(tmp_path_factory):
    """The shapes demo's Tiny (96 px, 3 classes, zero head biases, BatchNorm statistics of a fixed
    batch) exported without NMS (every decoded candidate) in FP32 and post-quantized (PTQ,
    quantize_linear format) to int8; with that batch's inputs."""
    from types import SimpleNamespace

    from ppdet_lite.export.jit import export_model
    from ppdet_lite.slim import PTQ
    from ppdet_lite.slim.quant import calibration_batches

    from ..slim.helpers import calibrated_tiny

    tmp = tmp_path_factory.mktemp("lite_int8")
    cfg, model, batch = calibrated_tiny(tmp)
    fp32 = export_model(cfg, str(tmp / "inference"), model=model)
    ptq = PTQ({"activation_quantizer": "HistQuantizer", "hist_percent": 0.999}, quant_batch_num=2)
    int8 = ptq.quantize(fp32, str(tmp / "ptq"), calibration_batches(cfg, 2))
    inputs = {k: batch[k].numpy() for k in ("image", "im_shape", "scale_factor")}
    return SimpleNamespace(fp32=fp32, int8=int8, inputs=inputs, tmp=tmp)


@pytest.mark.slow
def test_x86_int8_nb_boxes_overlap_fp32(shapes_ptq, lite_python):
    """A real int8 .nb in the real x86 Lite runtime gives the FP32 .nb's candidate boxes
    (8 images x top 50); converted without lite_x86_int8.py's workarounds it does not."""
    import numpy as np

    from ppdet_lite.export.inference import inference_predictor, run_inference

    from ..slim.helpers import compare_candidates as candidates

    m, tmp = shapes_ptq, shapes_ptq.tmp
    fp32 = lite_run(lite_python, lite.convert(m.fp32, "x86", str(tmp / "nb_fp32")), m.inputs,
                    tmp / "fp32")
    ref = run_inference(inference_predictor(m.fp32), m.inputs)
    assert max(np.abs(a - b).max() for a, b in zip(fp32, ref)) < 1e-4  # FP32 .nb = Inference
    int8 = lite_run(lite_python, lite.convert(m.int8, "x86", str(tmp / "nb_int8")), m.inputs,
                    tmp / "int8")
    ious, dscore, same = candidates(fp32, int8)
    print(f"int8 vs fp32 .nb: IoU min {ious.min():.3f} mean {ious.mean():.3f}, |score diff| mean "
          f"{dscore.mean():.4f} max {dscore.max():.3f}, same class {same.mean():.3f}")
    assert ious.min() > 0.5 and ious.mean() > 0.95, (ious.min(), ious.mean())
    assert dscore.mean() < 0.01 and same.mean() > 0.95, (dscore.mean(), same.mean())

    as_is = lite_run(lite_python, lite.convert(m.int8, "x86", str(tmp / "nb_int8_as_is"),
                                               x86_int8_fixes=False), m.inputs, tmp / "as_is")
    ious, dscore, _ = candidates(fp32, as_is)
    print(f"converted as is: IoU min {ious.min():.3f} mean {ious.mean():.3f}, |score diff| mean "
          f"{dscore.mean():.4f} max {dscore.max():.3f}")
    assert ious.mean() < 0.9 or dscore.mean() > 0.05, \
        "Lite's x86 int8 kernels now give the right boxes unaided: lite_x86_int8.py can go"


@pytest.mark.slow
def test_ptq_tiny_arm_nb_is_at_most_1_5_mb(tmp_path, lite_python):
    """The 80-class PP-YOLO Tiny at 320 px, post-quantized (per-channel int8 weights), as an arm
    .nb: at most 1,500,000 bytes (PaddleDetection publishes 1.3 MB). Size does not depend on the
    weights' values, so random ones do."""
    import numpy as np
    import paddle

    import ppdet_lite
    from ppdet_lite.export.jit import export_model
    from ppdet_lite.slim import PTQ

    from .conftest import our_cfg

    cfg = our_cfg("ppyolo_tiny", 320)
    cfg["filename"] = "fp32"
    paddle.seed(0)
    fp32 = export_model(cfg, str(tmp_path), model=ppdet_lite.build_model(cfg))
    rng = np.random.RandomState(0)
    batches = [{"image": rng.normal(0, 1, (1, 3, 320, 320)).astype("float32"),
                "im_shape": np.array([[320, 320]], "float32"),
                "scale_factor": np.ones((1, 2), "float32")} for _ in range(2)]
    int8 = PTQ({"activation_quantizer": "HistQuantizer", "hist_percent": 0.999},
               quant_batch_num=2).quantize(fp32, str(tmp_path / "int8"), batches)
    size = os.path.getsize(os.path.join(lite.convert(int8, "arm"), "model.nb"))
    as_exported = os.path.getsize(os.path.join(
        lite.convert(int8, "arm", str(tmp_path / "as_exported"), compact=False), "model.nb"))
    print(f"PTQ PP-YOLO Tiny arm .nb: {size} bytes ({as_exported} without compacting)")
    assert size <= 1_500_000
    assert as_exported - size > 20_000  # names and debug attributes the .nb no longer stores


def _bn(channels: int):
    """BatchNorm2D with spread-out scale and shift (something for a fold to get wrong)."""
    import numpy as np
    import paddle

    bn = paddle.nn.BatchNorm2D(channels)
    rng = np.random.RandomState(channels)
    bn.weight.set_value(rng.uniform(0.5, 1.5, channels).astype("float32"))
    bn.bias.set_value(rng.uniform(-1, 1, channels).astype("float32"))
    return bn


def _kernel_bug_case(name: str):
    """(layers, input shape, input range, the x86_int8 fix that alone cures it). Inputs <= 0
    keep the uint8-shifted activations <= 128, so only case 1 can saturate int16."""
    from paddle import nn

    return {
        # 1: u8 x s8 pairs summed with int16 saturation (_mm256_maddubs_epi16)
        "int16_saturation": (lambda: nn.Conv2D(3, 8, 3, padding=1), [1, 3, 16, 16], (-1, 1),
                             x86_int8.halve_int8_weights),
        # 2: conv + BN + hard_swish fused into an int8 conv that ignores hard_swish
        "fused_hard_swish": (lambda: nn.Sequential(nn.Conv2D(3, 8, 3, padding=1, bias_attr=False),
                                                   _bn(8), nn.Hardswish()),
                             [1, 3, 16, 16], (-1, 0), x86_int8.split_activations),
        # 3: a 56-float conv input (an SE squeeze on a 1x1 map): calib leaves 12 of the 24
        # floats after the last block of 32 unwritten (stale memory, so inputs away from 0)
        "calib_tail": (lambda: nn.Conv2D(56, 14, 1), [1, 56, 1, 1], (-1, -0.5),
                       x86_int8.float_ragged_convs),
        # 4: depthwise conv with int8 output and a fused leaky_relu
        "depthwise_int8_out_leaky_relu": (
            lambda: nn.Sequential(nn.Conv2D(32, 32, 1, bias_attr=False), _bn(32), nn.ReLU(),
                                  nn.Conv2D(32, 32, 5, padding=2, groups=32, bias_attr=False),
                                  _bn(32), nn.LeakyReLU(0.1),
                                  nn.Conv2D(32, 32, 1, bias_attr=False), _bn(32)),
            [1, 32, 8, 8], (-1, 0), x86_int8.split_activations),
    }[name]


@pytest.mark.parametrize("bug", ["int16_saturation", "fused_hard_swish", "calib_tail",
                                 "depthwise_int8_out_leaky_relu"])
def test_x86_int8_kernel_bug_and_its_workaround(bug, tmp_path, lite_python):
    """Minimal reproductions of the Lite 2.13 x86 int8 bugs lite_x86_int8.py works around: as
    quantized, the x86 .nb disagrees with Paddle Inference; after that one fix it agrees with
    Paddle Inference running the fixed program."""
    import numpy as np
    import paddle

    from ppdet_lite.export.program_edit import SavedProgram
    from ppdet_lite.slim import PTQ
    from ppdet_lite.export.inference import inference_predictor, run_inference

    make, shape, (lo, hi), fix = _kernel_bug_case(bug)
    paddle.seed(0)
    layer = make()
    layer.eval()
    spec = [paddle.static.InputSpec(shape, "float32", "x")]
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True),
                    str(tmp_path / "fp32" / "model"), input_spec=spec)
    (tmp_path / "fp32" / "infer_cfg.yml").write_text("arch: YOLO\n")
    rng = np.random.RandomState(0)
    batches = [{"x": rng.uniform(lo, hi, shape).astype("float32")} for _ in range(4)]
    int8 = PTQ({"activation_quantizer": "AbsmaxQuantizer"}, quant_batch_num=4).quantize(
        str(tmp_path / "fp32"), str(tmp_path / "int8"), batches)
    with SavedProgram(int8) as prog:
        assert fix(prog) > 0
        fixed = prog.save(str(tmp_path / "fixed"))
    x = batches[0]

    def diff(model_dir, name):
        nb = lite.convert(model_dir, "x86", str(tmp_path / name), x86_int8_fixes=False)
        out = lite_run(lite_python, nb, x, tmp_path / name)[0]
        ref = run_inference(inference_predictor(model_dir), x)[0]
        return float(np.abs(out - ref).max()), float(np.abs(ref).max()) / 127

    (as_is, _), (cured, step) = diff(int8, "as_is"), diff(fixed, "fixed")
    print(f"{bug}: x86 .nb vs Paddle Inference max |diff| {as_is:.3f} as quantized, "
          f"{cured:.4f} after {fix.__name__} (output int8 step {step:.4f})")
    assert as_is > 10 * step, f"Lite's x86 int8 kernels now handle {bug}: drop {fix.__name__}"
    # Paddle Inference rounds every op output to its int8 grid where Lite keeps floats: the two
    # agree to a few steps of that grid
    assert cured < 3 * step

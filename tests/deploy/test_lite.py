"""Paddle Lite: convert to .nb (arm and x86), run the x86 one in the Lite Python runtime (its own
Python 3.10 venv, a subprocess) and compare with Paddle Inference."""
import zlib  # noqa: F401  (before paddle)
import os
import sys

import pytest

from .helpers import REPO, check_lite_x86

sys.path.insert(0, os.path.join(REPO, "deploy", "lite"))
import convert as lite  # noqa: E402


def test_x86_nb_of_paddledetection_tiny_matches(ppdet_tiny, image_files, lite_python, run_boxes,
                                                 work):
    check_lite_x86(ppdet_tiny, image_files, lite_python, run_boxes, str(work / "lite_ppdet"))


def test_x86_nb_of_ours_matches(ours_tiny, image_files, lite_python, run_boxes, work):
    pdmodel = os.path.join(ours_tiny.dir, "model.pdmodel")
    assert lite.zero_d_reductions(pdmodel) == [] and lite.zero_d_constants(pdmodel) == []
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

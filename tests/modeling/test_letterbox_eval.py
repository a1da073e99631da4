"""Eval on a letterboxed input: the architectures hand the decode the network input size, so a
centred padding (input larger than ``im_shape``) is undone; the jit export gives dygraph's boxes
for letterboxed and plain inputs alike (Paddle Inference, fixed input size)."""
import os

import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.modeling import build_model

from .tiny_cfg import tiny_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H, W = 96, 128


def _model(arch):
    paddle.seed(0)
    if arch == "YOLOv3":
        cfg = tiny_cfg(num_classes=3)
        cfg["YOLOv3Head"] = dict(cfg["YOLOv3Head"], obj_bias_init=-1.0, cls_bias_init=-1.0)
    else:
        cfg = ppdet_lite.load_config(os.path.join(ROOT, "configs", "yolov4_tiny.yml"),
                                     overrides={"num_classes": 3})
    model = build_model(cfg)
    model.eval()
    return model


def _inputs():
    """Two letterboxed images (content 72x128 of a 90x160 photo, 96x80 of 120x100) and one
    plain one (content = the whole input)."""
    rng = np.random.RandomState(0)
    return {"image": paddle.to_tensor(rng.normal(0, 1, (3, 3, H, W)).astype("float32")),
            "im_shape": paddle.to_tensor([[72., 128.], [96., 80.], [96., 128.]]),
            "scale_factor": paddle.to_tensor([[0.8, 0.8], [0.8, 0.8], [0.5, 0.25]])}


def _decode(model, inputs, input_hw):
    model.exclude_post_process = True
    try:
        heads = model(inputs)["head_outs"]
    finally:
        model.exclude_post_process = False
    facts = model.yolo_head.levels if hasattr(model.yolo_head, "levels") else \
        model.yolo_head.mask_anchors
    extra = () if input_hw is None else (paddle.to_tensor(input_hw, "int32"),)
    return model.post_process.decode(heads, facts, inputs["im_shape"], inputs["scale_factor"],
                                     *extra)[0].numpy()


@pytest.mark.parametrize("arch", ["YOLOv3", "YOLOv4"])
def test_eval_passes_the_input_size_to_the_decode(arch):
    model, inputs = _model(arch), _inputs()
    model.exclude_nms = True
    with paddle.no_grad():
        boxes = model(inputs)["boxes"].numpy()
        corrected, plain = _decode(model, inputs, [H, W]), _decode(model, inputs, None)
    model.exclude_nms = False
    assert np.array_equal(boxes, corrected)
    assert np.array_equal(boxes[2], plain[2])            # no padding: the plain decode's boxes
    assert np.abs(boxes[:2] - plain[:2]).max() > 1.0     # padding undone


def test_export_matches_dygraph_on_letterboxed_inputs(tmp_path):
    model, inputs = _model("YOLOv4"), _inputs()
    model.exclude_nms = True
    spec = [{"image": paddle.static.InputSpec([None, 3, H, W], "float32", "image"),
             "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
             "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor")}]
    path = str(tmp_path / "model")
    paddle.jit.save(paddle.jit.to_static(model, input_spec=spec, full_graph=True), path)
    with paddle.no_grad():
        ref = model(inputs)
    model.exclude_nms = False
    pcfg = paddle.inference.Config(path + ".pdmodel", path + ".pdiparams")
    pcfg.disable_gpu()
    pcfg.switch_ir_optim(False)  # the graph as saved: same kernels as dygraph
    predictor = paddle.inference.create_predictor(pcfg)
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(inputs[name].numpy())
    predictor.run()
    got = [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
    assert got[0].shape == tuple(ref["boxes"].shape)  # a static box count M
    np.testing.assert_allclose(got[0], ref["boxes"].numpy(), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(got[1], ref["scores"].numpy(), rtol=0, atol=1e-5)

"""YOLOv4 family: the decode (``YOLOv4Box``, plain ops) vs a numpy darknet decode, and a jit
export of YOLOv4-tiny / YOLOv4-CSP (new_coords) that runs in Paddle Inference with free H, W and
gives dygraph's boxes and scores, without ``yolo_box``."""
import os

import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.modeling.yolov4_box import YOLOv4Box

from ..darknet.oracle import randomize

pytestmark = pytest.mark.slow  # exports / converts / trains: the full suite runs it, -m "not slow" skips it

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _np_decode(out, anchors, sxy, new_coords, in_h, in_w):
    """Darknet's [yolo] forward written out in numpy, rows (anchor, row, col)."""
    na = len(anchors)
    n, c, h, w = out.shape
    p = out.reshape(n, na, c // na, h, w)
    sig = lambda v: 1. / (1. + np.exp(-v))  # noqa: E731
    if not new_coords:
        p = np.concatenate([sig(p[:, :, :2]), p[:, :, 2:4], sig(p[:, :, 4:])], axis=2)
    rows = []
    for a in range(na):
        for i in range(h):
            for j in range(w):
                tx, ty, tw, th = p[0, a, :4, i, j]
                cx = (tx * sxy - (sxy - 1) / 2 + j) / w
                cy = (ty * sxy - (sxy - 1) / 2 + i) / h
                bw = (4 * tw * tw if new_coords else np.exp(tw)) * anchors[a][0] / in_w
                bh = (4 * th * th if new_coords else np.exp(th)) * anchors[a][1] / in_h
                rows.append([cx, cy, bw, bh, p[0, a, 4, i, j], *p[0, a, 5:, i, j]])
    return np.array(rows)


@pytest.mark.parametrize("new_coords", [False, True])
def test_decode_matches_numpy(new_coords):
    rng = np.random.RandomState(0)
    anchors = [[12, 16], [19, 36], [40, 28]]
    out = rng.uniform(-1.5, 1.5, (1, 3 * 7, 3, 5)).astype("float32")
    if new_coords:
        out = 1. / (1. + np.exp(-out))
    levels = [dict(anchors=anchors, scale_x_y=1.2 if not new_coords else 2., new_coords=new_coords)]
    # input 96 x 160 (h, w), original image 192 x 480: boxes scale by 2 and 3
    boxes, scores = YOLOv4Box(conf_thresh=0.3, clip_bbox=False)(
        [paddle.to_tensor(out)], levels, paddle.to_tensor([[96., 160.]]),
        paddle.to_tensor([[0.5, 1. / 3]]))
    ref = _np_decode(out, anchors, levels[0]["scale_x_y"], new_coords, 96, 160)
    xyxy = np.concatenate([ref[:, :2] - ref[:, 2:4] / 2, ref[:, :2] + ref[:, 2:4] / 2], 1)
    xyxy *= [480, 192, 480, 192]
    np.testing.assert_allclose(boxes.numpy()[0], xyxy, rtol=1e-5, atol=1e-3)
    want = ref[:, 4:5] * ref[:, 5:] * (ref[:, 4:5] >= 0.3)
    np.testing.assert_allclose(scores.numpy()[0].T, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", ["yolov4_tiny", pytest.param("yolov4_csp",
                                                                marks=pytest.mark.slow)])
def test_jit_export_runs_and_matches(config, tmp_path):
    cfg = ppdet_lite.load_config(os.path.join(ROOT, "configs", config + ".yml"),
                                 overrides={"num_classes": 3})
    model = ppdet_lite.build_model(cfg)
    randomize(model, size=128)  # BN-calibrated: activations O(1), as in a trained model
    model.exclude_nms = True
    spec = [{"image": paddle.static.InputSpec([None, 3, None, None], "float32", "image"),
             "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
             "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor")}]
    static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
    path = str(tmp_path / "model")
    paddle.jit.save(static, path)
    pcfg = paddle.inference.Config(path + ".pdmodel", path + ".pdiparams")
    pcfg.disable_gpu()
    pcfg.set_cpu_math_library_num_threads(2)
    predictor = paddle.inference.create_predictor(pcfg)
    desc = paddle.framework.core.ProgramDesc(open(path + ".pdmodel", "rb").read())
    ops = {desc.block(0).op(i).type() for i in range(desc.block(0).op_size())}
    assert "conv2d" in ops and "yolo_box" not in ops
    for h, w in [(64, 96), (128, 128)]:
        x = paddle.rand([2, 3, h, w])
        inputs = {"image": x, "im_shape": paddle.to_tensor([[h * 1., w * 1.]] * 2),
                  "scale_factor": paddle.to_tensor([[1., 1.], [0.5, 2.]])}
        with paddle.no_grad():
            ref = model(inputs)
        for name in predictor.get_input_names():
            predictor.get_input_handle(name).copy_from_cpu(inputs[name].numpy())
        predictor.run()
        got = [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
        assert [list(g.shape) for g in got] == [ref["boxes"].shape, ref["scores"].shape]
        # boxes in pixels (oneDNN's fused convs round differently): 1e-4 relative; scores 1e-4
        np.testing.assert_allclose(got[0], ref["boxes"].numpy(), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(got[1], ref["scores"].numpy(), rtol=0, atol=1e-4)

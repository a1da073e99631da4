"""EfficientDet pieces without the oracle: anchors, box coder, matcher, loss, post-process, the
model contract (train -> losses, eval -> bbox/bbox_num), drop-connect, swish export form."""
import os

import numpy as np
import paddle
import pytest

from ppdet_lite.core.config import load_config
from ppdet_lite.modeling import build_model
from ppdet_lite.modeling.anchor_generator import EfficientDetAnchors, feature_sizes
from ppdet_lite.modeling.anchor_matcher import label_anchors
from ppdet_lite.modeling.box_coder import decode_boxes, encode_boxes
from ppdet_lite.modeling.effdet_layers import drop_connect, swish
from ppdet_lite.modeling.efficientdet_post_process import EfficientDetPostProcess
from ppdet_lite.modeling.losses.efficientdet_loss import EfficientDetLoss

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_anchor_grid_d0_512():
    anchors = EfficientDetAnchors()
    boxes = anchors.boxes((512, 512))
    assert boxes.shape == ((64 ** 2 + 32 ** 2 + 16 ** 2 + 8 ** 2 + 4 ** 2) * 9, 4)
    # level 3, cell (0, 0), octave 0, ratio (1, 1): centre 4, size 4 * 8 = 32
    np.testing.assert_allclose(boxes[0], [-12, -12, 20, 20])
    # ratio (1.4, 0.7): wider than tall; octave 1: size 32 * 2^(1/3)
    w, h = boxes[1, 2] - boxes[1, 0], boxes[1, 3] - boxes[1, 1]
    np.testing.assert_allclose([w, h], [32 * 1.4, 32 * 0.7], rtol=1e-6)
    np.testing.assert_allclose(boxes[3, 2] - boxes[3, 0], 32 * 2 ** (1 / 3), rtol=1e-6)
    assert feature_sizes((100, 60), 3) == [(100, 60), (50, 30), (25, 15), (13, 8)]


def test_box_coder_round_trip():
    rng = np.random.RandomState(0)
    anchors = np.array([[0, 0, 32, 32], [10, 20, 50, 40]], "float32")
    boxes = np.array([[2, 3, 30, 40], [0, 15, 70, 45]], "float32")
    codes = encode_boxes(boxes, anchors)
    back = decode_boxes(paddle.to_tensor(codes), paddle.to_tensor(anchors)).numpy()
    np.testing.assert_allclose(back, boxes, atol=1e-4)
    assert rng is not None and codes.shape == (2, 4)
    # (ty, tx, th, tw) order: a box shifted only in x has ty = th = 0
    c = encode_boxes(np.array([[8, 0, 40, 32]], "float32"), anchors[:1])[0]
    np.testing.assert_allclose(c, [0, 0.25, 0, 0], atol=1e-6)


def test_matcher_thresholds_and_forced_match():
    anchors = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [50, 50, 60, 60]], "float32")
    gt = np.array([[0, 0, 10, 11], [48, 48, 70, 70]], "float32")  # IoU 0.91 / best 0.21
    cls, box, pos = label_anchors(anchors, gt, np.array([3, 7]))
    assert list(cls) == [3, -1, 7]  # anchor 2 only by the forced match
    assert pos == 2 and np.all(box[1] == 0) and np.any(box[0] != 0)
    cls, box, pos = label_anchors(anchors, np.zeros([0, 4], "float32"), np.zeros([0], "int64"))
    assert list(cls) == [-1, -1, -1] and pos == 0


def test_loss_no_objects_is_background_focal_only():
    anchors = EfficientDetAnchors(3, 4, 1, [(1.0, 1.0)], 4.0)
    loss = EfficientDetLoss()
    cls_outs = [paddle.full([1, 2, 8, 8], -2.0), paddle.full([1, 2, 4, 4], -2.0)]
    box_outs = [paddle.zeros([1, 4, 8, 8]), paddle.zeros([1, 4, 4, 4])]
    out = loss(cls_outs, box_outs, {"image": paddle.zeros([1, 3, 64, 64]),
                                    "gt_bbox": np.zeros([1, 2, 4], "float32"),
                                    "gt_class": -np.ones([1, 2, 1], "int32")}, anchors)
    p = 1 / (1 + np.exp(2.0))
    expected = 80 * 2 * 0.75 * p ** 1.5 * -np.log(1 - p)  # 80 anchors x 2 classes, normalizer 1
    np.testing.assert_allclose(float(out["loss_cls"]), expected, rtol=1e-5)
    assert float(out["loss_box"]) == 0.0
    np.testing.assert_allclose(float(out["loss"]), expected, rtol=1e-5)


def test_post_process_one_strong_anchor():
    anchors = EfficientDetAnchors(3, 4, 1, [(1.0, 1.0)], 4.0)
    boxes = anchors.boxes((64, 64))
    cls0 = np.full([1, 3, 8, 8], -8.0, "float32")
    cls0[0, 2, 3, 5] = 4.0  # class 2 at level 3, y 3, x 5 (anchor 3 * 8 + 5)
    post = EfficientDetPostProcess(max_detection_points=50, max_det_per_image=10)
    bbox, num = post([paddle.to_tensor(cls0), paddle.full([1, 3, 4, 4], -8.0)],
                     [paddle.zeros([1, 4, 8, 8]), paddle.zeros([1, 4, 4, 4])], boxes,
                     paddle.to_tensor([[0.5, 0.5]]), paddle.to_tensor([[64., 64.]]))
    bbox = bbox.numpy()
    assert int(num[0]) == len(bbox) <= 10
    bbox = bbox[np.argsort(-bbox[:, 1])]  # multiclass_nms3 groups rows by class
    assert bbox[0, 0] == 2 and abs(bbox[0, 1] - 1 / (1 + np.exp(-4.0))) < 1e-6
    expected = np.clip(boxes[3 * 8 + 5], 0, 64) / 0.5
    np.testing.assert_allclose(bbox[0, 2:], expected, atol=1e-4)


def _d0_small():
    cfg = load_config(os.path.join(ROOT, "configs", "efficientdet_d0.yml"))
    cfg["num_classes"] = 3
    return build_model(cfg)


def test_model_contract_train_and_eval():
    model = _d0_small()
    image = paddle.rand([2, 3, 128, 128])
    inputs = {"image": image, "im_shape": paddle.to_tensor([[128., 128.]] * 2),
              "scale_factor": paddle.to_tensor([[1., 1.]] * 2),
              "gt_bbox": paddle.to_tensor([[[10., 10., 60., 70.], [0., 0., 0., 0.]],
                                           [[30., 40., 120., 100.], [5., 5., 40., 30.]]]),
              "gt_class": paddle.to_tensor([[[1], [0]], [[2], [0]]], dtype="int32")}
    model.train()
    losses = model(inputs)
    assert set(losses) == {"loss", "loss_cls", "loss_box"}
    losses["loss"].backward()
    assert model.head.class_net.predict.conv_pw.bias.grad is not None
    model.eval()
    with paddle.no_grad():
        out = model(inputs)
    assert out["bbox"].shape[1] == 6 and out["bbox_num"].shape == [2]
    assert int(out["bbox_num"].sum()) == out["bbox"].shape[0] <= 200


def test_drop_connect_and_swish():
    x = paddle.ones([64, 2, 1, 1])
    assert np.all(drop_connect(x, 0.5, training=False).numpy() == 1)
    y = drop_connect(x, 0.5, training=True).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 0 < (y == 0).mean() < 1
    v = paddle.to_tensor([-2., 0., 3.])
    np.testing.assert_allclose(swish(v).numpy(), (v * paddle.nn.functional.sigmoid(v)).numpy())


def test_swish_is_one_op_and_lite_x86_gets_sigmoid_mul(tmp_path):
    """The export keeps Paddle's one swish op (oneDNN fuses it into the conv); the Lite x86
    program has none (Lite 2.13 has no x86 kernel for it) and computes the same outputs."""
    from ppdet_lite.export.inference import load_predictor, run_inference
    from ppdet_lite.export.lite import prepare_program
    from ppdet_lite.export.program_edit import program_ops
    from ppdet_lite.modeling.backbones.efficientnet import EfficientNet

    net = EfficientNet("b0")
    net.eval()
    static = paddle.jit.to_static(net, input_spec=[paddle.static.InputSpec([1, 3, 64, 64], name="x")])
    paddle.jit.save(static, str(tmp_path / "fp32" / "model"))
    report = prepare_program(str(tmp_path / "fp32"), str(tmp_path / "lite"), "x86")
    assert "swish" in program_ops(str(tmp_path / "fp32" / "model.pdmodel"))
    ops = program_ops(str(tmp_path / "lite" / "model.pdmodel"))
    assert report["swish written as x * sigmoid(x)"] > 0 and "sigmoid" in ops \
        and not ops & {"swish", "silu"}
    x = {"x": np.random.RandomState(0).randn(1, 3, 64, 64).astype("float32")}
    outs = [run_inference(load_predictor(str(tmp_path / d), cpu_threads=1)[0], x) for d in ("fp32", "lite")]
    assert max(float(np.abs(a - b).max()) for a, b in zip(*outs)) < 1e-5

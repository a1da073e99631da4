"""PP-YOLO Tiny parity with PaddleDetection 2.6.0: same state_dict keys/shapes, same features,
head outputs, boxes and loss terms for the same weights and inputs."""

import numpy as np
import paddle
import pytest

from ppdet_lite.modeling import build_model
from ppdet_lite.modeling.backbones import MobileNetV3
from ppdet_lite.modeling.heads import YOLOv3Head
from ppdet_lite.modeling.losses import IouAwareLoss, IouLoss, YOLOv3Loss
from ppdet_lite.modeling.post_process import MatrixNMS, YOLOBox

from .tiny_cfg import TINY_ANCHORS, tiny_cfg

ppdet = pytest.importorskip("ppdet", reason="PaddleDetection 2.6.0 is the parity oracle; "
                                            "install it with pip install --no-deps paddledet==2.6.0")
paddle.set_device("cpu")
MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
NC = 80


def ref_tiny(num_classes=NC, iou_aware=False):
    """PaddleDetection's PP-YOLO Tiny built from its Python classes (ppyolo_tiny.yml values)."""
    from ppdet.modeling.architectures.yolo import YOLOv3 as RefYOLOv3
    from ppdet.modeling.backbones.mobilenet_v3 import MobileNetV3 as RefMBV3
    from ppdet.modeling.heads.yolo_head import YOLOv3Head as RefHead
    from ppdet.modeling.layers import MultiClassNMS as RefNMS, YOLOBox as RefBox
    from ppdet.modeling.losses import IouAwareLoss as RefIAL, IouLoss as RefIou
    from ppdet.modeling.losses.yolo_loss import YOLOv3Loss as RefLoss
    from ppdet.modeling.necks.yolo_fpn import PPYOLOTinyFPN as RefFPN
    from ppdet.modeling.post_process import BBoxPostProcess as RefPost

    backbone = RefMBV3(scale=0.5, model_name="large", feature_maps=[7, 13, 16],
                       with_extra_blocks=False, extra_block_filters=[], norm_type="sync_bn")
    neck = RefFPN(in_channels=[s.channels for s in backbone.out_shape],
                  detection_block_channels=[160, 128, 96], norm_type="sync_bn", spp=True,
                  drop_block=True)
    loss = RefLoss(num_classes=num_classes, ignore_thresh=0.5, downsample=[32, 16, 8],
                   scale_x_y=1.05, iou_loss=RefIou(loss_weight=2.5, loss_square=True),
                   iou_aware_loss=RefIAL(loss_weight=1.0) if iou_aware else None)
    head = RefHead(in_channels=[160, 128, 96], anchors=TINY_ANCHORS, anchor_masks=MASKS,
                   num_classes=num_classes, loss=loss, iou_aware=iou_aware, iou_aware_factor=0.4)
    post = RefPost(num_classes=num_classes,
                   decode=RefBox(num_classes=num_classes, conf_thresh=0.005, downsample_ratio=32,
                                 clip_bbox=True, scale_x_y=1.05),
                   nms=RefNMS(keep_top_k=100, nms_threshold=0.45, nms_top_k=1000,
                              score_threshold=0.005))
    return RefYOLOv3(backbone, neck, head, post)


def ours_tiny(num_classes=NC, iou_aware=False):
    cfg = tiny_cfg(num_classes=num_classes)
    if iou_aware:
        cfg["YOLOv3Head"] = dict(cfg["YOLOv3Head"], iou_aware=True, iou_aware_factor=0.4)
        cfg["YOLOv3Loss"] = dict(cfg["YOLOv3Loss"], iou_aware_loss="IouAwareLoss")
        cfg["IouAwareLoss"] = {"loss_weight": 1.0}
    return build_model(cfg)


def randomize_and_copy(ref, ours, seed=0):
    """Random weights and BN statistics in ``ref``, copied into ``ours`` by identical keys."""
    rng = np.random.RandomState(seed)
    ref_sd, our_sd = ref.state_dict(), ours.state_dict()
    assert list(ref_sd) == list(our_sd)
    assert all(ref_sd[k].shape == our_sd[k].shape for k in ref_sd)
    new = {}
    for k, v in ref_sd.items():
        a = rng.randn(*v.shape).astype("float32") * 0.2
        if k.endswith("_variance"):
            a = np.abs(a) + 0.5
        new[k] = a
    ref.set_state_dict(new)
    ours.set_state_dict(new)


def make_inputs(n=2, h=128, w=160, num_classes=NC, seed=0):
    rng = np.random.RandomState(seed)
    inputs = {"image": paddle.to_tensor(rng.randn(n, 3, h, w).astype("float32")),
              "im_shape": paddle.to_tensor([[h, w]] * n, dtype="float32"),
              "scale_factor": paddle.to_tensor([[0.5, 0.8], [1.0, 1.0]][:n], dtype="float32")}
    gt = np.zeros([n, 4, 4], "float32")
    gt[:, :3, :2] = rng.uniform(0.2, 0.8, [n, 3, 2])
    gt[:, :3, 2:] = rng.uniform(0.05, 0.5, [n, 3, 2])
    inputs["gt_bbox"] = paddle.to_tensor(gt)
    inputs["gt_class"] = paddle.to_tensor(rng.randint(0, num_classes, [n, 4, 1]).astype("int32"))
    inputs["gt_score"] = paddle.ones([n, 4, 1])
    for i, s in enumerate([32, 16, 8]):
        t = np.zeros([n, 3, 6 + num_classes, h // s, w // s], "float32")
        for b in range(n):  # a few positives, one with a mixup score
            for j, (gy, gx) in enumerate([(0, 1), (h // s - 1, 2), (1, w // s - 1)]):
                a = j % 3
                t[b, a, :6, gy, gx] = [*rng.uniform(0.1, 0.9, 2), *rng.uniform(-1, 1, 2),
                                       rng.uniform(1, 2), [1.0, 0.6, 1.0][j]]
                t[b, a, 6 + rng.randint(num_classes), gy, gx] = 1.
        inputs[f"target{i}"] = paddle.to_tensor(t)
    return inputs


@pytest.fixture(scope="module")
def pair():
    paddle.seed(0)
    ref, ours = ref_tiny(), ours_tiny()
    randomize_and_copy(ref, ours)
    ref.eval(), ours.eval()
    return ref, ours


def maxdiff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def test_param_count_equals_paddledetection(pair):
    ref, ours = pair

    def trainable(m):
        return sum(int(np.prod(p.shape)) for p in m.parameters() if not p.stop_gradient)

    assert trainable(ours) == trainable(ref) == 1086147  # reference: 1.086M
    assert sum(int(np.prod(v.shape)) for v in ours.state_dict().values()) == \
        sum(int(np.prod(v.shape)) for v in ref.state_dict().values())


def test_eval_features_heads_and_boxes_match(pair):
    ref, ours = pair
    inputs = make_inputs()
    with paddle.no_grad():
        f_ref, f_our = ref.backbone(inputs), ours.backbone(inputs)
        assert [f.shape for f in f_our] == [[2, 24, 16, 20], [2, 56, 8, 10], [2, 80, 4, 5]]
        assert ours.backbone.out_channels == [24, 56, 80]
        for a, b in zip(f_ref, f_our):
            assert maxdiff(a, b) <= 1e-4
        n_ref, n_our = ref.neck(f_ref), ours.neck(f_our)
        for a, b in zip(n_ref, n_our):
            assert maxdiff(a, b) <= 1e-4
        h_ref, h_our = ref.yolo_head(n_ref), ours.yolo_head(n_our)
        assert [h.shape[1] for h in h_our] == [255, 255, 255]
        for a, b in zip(h_ref, h_our):
            assert maxdiff(a, b) <= 1e-4
        out_ref, out_our = ref(dict(inputs)), ours(dict(inputs))
    assert out_our["bbox_num"].numpy().tolist() == out_ref["bbox_num"].numpy().tolist()
    assert out_our["bbox_num"].numpy().sum() > 0
    assert out_our["bbox"].shape == out_ref["bbox"].shape
    a, b = out_ref["bbox"].numpy(), out_our["bbox"].numpy()
    assert (a[:, 0] == b[:, 0]).all()
    assert maxdiff(a[:, 1:], b[:, 1:]) <= 1e-3


def test_loss_terms_match(pair):
    ref, ours = pair
    inputs = make_inputs(seed=1)
    with paddle.no_grad():
        feats = ref.neck(ref.backbone(inputs))
        outs = [conv(f) for conv, f in zip(ref.yolo_head.yolo_outputs, feats)]
    l_ref = ref.yolo_head.loss(outs, inputs, ref.yolo_head.anchors)
    l_our = ours.yolo_head.loss(outs, inputs, ours.yolo_head.anchors)
    assert set(l_our) == {"loss_xy", "loss_wh", "loss_iou", "loss_obj", "loss_cls", "loss"}
    assert set(l_our) == set(l_ref)
    for k in l_ref:
        np.testing.assert_allclose(float(l_our[k]), float(l_ref[k]), rtol=1e-5, err_msg=k)
    # distillation taps: per level x, y, w, h, obj, cls
    assert len(ours.yolo_head.loss.distill_pairs) == 3
    for a, b in zip(ref.yolo_head.loss.distill_pairs, ours.yolo_head.loss.distill_pairs):
        for u, v in zip(a, b):
            assert u.shape == v.shape and maxdiff(u, v) == 0


def test_runaway_size_logit_keeps_gradients_finite(pair):
    """One w logit of 97 (seen on the demo once BatchNorm trained on running statistics) in a
    cell no box is assigned to: the losses equal PaddleDetection's, and every gradient is finite
    (log sizes clipped before exp); PaddleDetection's exp gives inf there and the IoU loss's
    division a NaN gradient for the whole map."""
    ref, ours = pair
    inputs = make_inputs(seed=1)
    with paddle.no_grad():
        feats = ref.neck(ref.backbone(inputs))
        outs = [conv(f) for conv, f in zip(ref.yolo_head.yolo_outputs, feats)]
    outs[0][0, 2, 0, 0] = 97.0  # anchor 0's w at the top-left cell of the first level

    def loss_and_grads(model):
        leaves = [o.detach() for o in outs]
        for o in leaves:
            o.stop_gradient = False
        loss = model.yolo_head.loss(leaves, inputs, model.yolo_head.anchors)
        loss["loss"].backward()
        return loss, [o.grad.numpy() for o in leaves]

    l_our, g_our = loss_and_grads(ours)
    l_ref, g_ref = loss_and_grads(ref)
    for k in l_ref:
        np.testing.assert_allclose(float(l_our[k]), float(l_ref[k]), rtol=1e-5, err_msg=k)
    assert all(np.isfinite(g).all() for g in g_our)
    assert not np.isfinite(g_ref[0]).all()


def test_train_forward_matches_without_dropblock(pair):
    ref, ours = pair
    for m in (ref, ours):
        m.train()
        for blk in m.neck.yolo_blocks:
            blk.drop_block_ = False
    try:
        inputs = make_inputs(seed=2)
        l_ref, l_our = ref(dict(inputs)), ours(dict(inputs))
        for k in l_ref:
            np.testing.assert_allclose(float(l_our[k]), float(l_ref[k]), rtol=1e-4, err_msg=k)
        l_our["loss"].backward()
        grads = [p.grad for p in ours.parameters() if not p.stop_gradient]
        assert all(g is not None for g in grads)
    finally:
        for m in (ref, ours):
            m.eval()
            m.clear_gradients()
            for blk in m.neck.yolo_blocks:
                blk.drop_block_ = True


def test_iou_aware_head_rescoring_and_loss():
    paddle.seed(1)
    nc = 4
    ref, ours = ref_tiny(nc, iou_aware=True), ours_tiny(nc, iou_aware=True)
    randomize_and_copy(ref, ours, seed=3)
    ref.eval(), ours.eval()
    inputs = make_inputs(num_classes=nc, seed=3)
    with paddle.no_grad():
        feats = ref.neck(ref.backbone(inputs))
        h_ref, h_our = ref.yolo_head(feats), ours.yolo_head(feats)
        assert [h.shape[1] for h in h_our] == [3 * (nc + 5)] * 3
        for a, b in zip(h_ref, h_our):
            assert maxdiff(a, b) <= 1e-4
        out_ref, out_our = ref(dict(inputs)), ours(dict(inputs))
        assert out_our["bbox_num"].numpy().tolist() == out_ref["bbox_num"].numpy().tolist()
        assert maxdiff(out_ref["bbox"].numpy()[:, 1:], out_our["bbox"].numpy()[:, 1:]) <= 1e-3
        raw = [conv(f) for conv, f in zip(ref.yolo_head.yolo_outputs, feats)]
        assert raw[0].shape[1] == 3 * (nc + 6)
    l_ref = ref.yolo_head.loss(raw, inputs, ref.yolo_head.anchors)
    l_our = ours.yolo_head.loss(raw, inputs, ours.yolo_head.anchors)
    assert "loss_iou_aware" in l_our
    for k in l_ref:
        np.testing.assert_allclose(float(l_our[k]), float(l_ref[k]), rtol=1e-5, err_msg=k)


def test_matrix_nms_matches():
    from ppdet.modeling.layers import MatrixNMS as RefMatrix
    from ppdet.modeling.layers import YOLOBox as RefBox
    rng = np.random.RandomState(4)
    outs = [paddle.to_tensor(rng.randn(2, 3 * 9, s, s).astype("float32")) for s in (2, 4, 8)]
    anchors = [[v for a in (TINY_ANCHORS[i] for i in m) for v in a] for m in MASKS]
    im_shape = paddle.to_tensor([[64, 64]] * 2, dtype="float32")
    scale = paddle.to_tensor([[0.5, 0.5], [1., 1.]], dtype="float32")
    kw = dict(num_classes=4, conf_thresh=0.01, downsample_ratio=32, clip_bbox=True, scale_x_y=1.05)
    boxes, scores = YOLOBox(**kw)(outs, anchors, im_shape, scale)
    rb, rs = RefBox(**kw)(outs, anchors, im_shape, scale)
    assert maxdiff(boxes, rb) == 0 and maxdiff(scores, rs) == 0
    nms_kw = dict(keep_top_k=100, score_threshold=0.01, post_threshold=0.01, nms_top_k=-1,
                  background_label=-1)
    ours = MatrixNMS(**nms_kw)(boxes, scores)
    ref = RefMatrix(**nms_kw)(boxes, scores)
    assert ours[1].numpy().tolist() == ref[1].numpy().tolist()
    assert ours[0].shape[0] > 0 and maxdiff(ours[0], ref[0]) <= 1e-5


@pytest.mark.parametrize("kw,shapes", [
    (dict(model_name="small", scale=1.0, feature_maps=[9, 12]), [[1, 48, 4, 4], [1, 96, 2, 2]]),
    (dict(model_name="large", scale=1.0, feature_maps=[13, 16]), [[1, 112, 4, 4], [1, 160, 2, 2]]),
    (dict(model_name="large", scale=0.35, feature_maps=[14, 17, 18], with_extra_blocks=True,
          extra_block_filters=[[32, 64]], multiplier=0.5), None),
])
def test_mobilenet_v3_variants(kw, shapes):
    from ppdet.modeling.backbones.mobilenet_v3 import MobileNetV3 as RefMBV3
    ref, ours = RefMBV3(**kw), MobileNetV3(**kw)
    randomize_and_copy(ref, ours, seed=5)
    ref.eval(), ours.eval()
    assert ours.out_channels == [s.channels for s in ref.out_shape]
    x = {"image": paddle.to_tensor(np.random.RandomState(6).randn(1, 3, 64, 64).astype("float32"))}
    with paddle.no_grad():
        a, b = ref(x), ours(x)
    assert len(a) == len(b) == len(kw["feature_maps"])
    if shapes:
        assert [t.shape for t in b] == shapes
    for u, v in zip(a, b):
        assert maxdiff(u, v) <= 1e-4


def test_iou_losses_match_paddledetection():
    from ppdet.modeling.losses import IouAwareLoss as RefIAL, IouLoss as RefIou
    rng = np.random.RandomState(7)

    def boxes():
        xy = rng.uniform(0, 1, [2, 3, 4, 4, 2]).astype("float32")
        wh = rng.uniform(0.05, 0.5, [2, 3, 4, 4, 2]).astype("float32")
        return [paddle.to_tensor(v) for v in (xy[..., :1], xy[..., 1:], xy[..., :1] + wh[..., :1],
                                              xy[..., 1:] + wh[..., 1:])]
    p, g = boxes(), boxes()
    for flags in [{}, {"giou": True}, {"diou": True}, {"ciou": True}]:
        for square in (True, False):
            assert maxdiff(IouLoss(2.5, loss_square=square, **flags)(p, g),
                           RefIou(2.5, loss_square=square, **flags)(p, g)) <= 1e-6
    ioup = paddle.to_tensor(rng.randn(2, 3, 4, 4, 1).astype("float32"))
    assert maxdiff(IouAwareLoss(1.0)(ioup, p, g), RefIAL(1.0)(ioup, p, g)) <= 1e-6
    loss = YOLOv3Loss(num_classes=2, label_smooth=True)
    np.testing.assert_allclose(loss.cls_loss(paddle.zeros([1, 2]), paddle.to_tensor([[1., 0.]])).numpy(),
                               [[np.log(2)] * 2], rtol=1e-6)
    assert isinstance(YOLOv3Head(in_channels=[8], anchors=[[1, 2]], anchor_masks=[[0]]), YOLOv3Head)

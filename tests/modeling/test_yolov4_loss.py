"""YOLOv4Loss vs a numpy reference written from darknet's yolo_layer.c description: best-anchor
and iou_thresh assignment, ignore_thresh, CIoU, normalizers, label smoothing; and a few SGD steps
of YOLOv4-tiny that lower it."""
import math
import os

import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.modeling.losses.yolov4_loss import YOLOv4Loss, assign_targets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANCHORS = [[10, 14], [23, 27], [37, 58], [81, 82], [135, 169], [344, 319]]
LEVELS = [dict(anchors=[ANCHORS[i] for i in m], scale_x_y=sxy, new_coords=nc, mask=m,
               all_anchors=ANCHORS)
          for m, sxy, nc in (([3, 4, 5], 1.05, False), ([0, 1, 2], 1.05, False))]


def _sig(v):
    return 1. / (1. + np.exp(-v))


def _bce(p, t):
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def _iou(a, b):
    iw = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _ciou(p, g):
    iou = _iou(p, g)
    c2 = (max(p[2], g[2]) - min(p[0], g[0])) ** 2 + (max(p[3], g[3]) - min(p[1], g[1])) ** 2
    rho2 = ((p[0] + p[2] - g[0] - g[2]) ** 2 + (p[1] + p[3] - g[1] - g[3]) ** 2) / 4
    v = 4 / math.pi ** 2 * (math.atan((p[2] - p[0]) / (p[3] - p[1]))
                            - math.atan((g[2] - g[0]) / (g[3] - g[1]))) ** 2
    return iou - rho2 / c2 - v * v / (1 - iou + v)


def _reference(outs, gt, cls, size, loss_args):
    """Loops over cells/anchors/truths as darknet's forward_yolo_layer does."""
    nc, eps = 3, loss_args["label_smooth_eps"]
    total = dict(loss_iou=0., loss_obj=0., loss_cls=0.)
    n = gt.shape[0]
    for out, level, on in zip(outs, LEVELS, loss_args["obj_normalizer"]):
        na, (_, c, h, w) = len(level["mask"]), out.shape
        p = out.reshape(n, na, c // na, h, w)
        for b in range(n):
            truths = [(k, gt[b, k]) for k in range(gt.shape[1]) if gt[b, k, 2] > 0]
            boxes = [np.r_[t[:2] - t[2:] / 2, t[:2] + t[2:] / 2] for _, t in truths]
            pos = {}
            for k, t in truths:
                shape_iou = [_iou([0, 0, t[2], t[3]], [0, 0, a[0] / size, a[1] / size])
                             for a in ANCHORS]
                best = int(np.argmax(shape_iou))
                for slot, an in enumerate(level["mask"]):
                    if an == best or (loss_args["iou_thresh"] < 1
                                      and shape_iou[an] > loss_args["iou_thresh"]):
                        pos.setdefault((slot, int(t[1] * h), int(t[0] * w)), []).append(k)
            for a in range(na):
                aw, ah = level["anchors"][a]
                for i in range(h):
                    for j in range(w):
                        q = p[b, a, :, i, j]
                        s = level["scale_x_y"]
                        cx = (s * _sig(q[0]) - (s - 1) / 2 + j) / w
                        cy = (s * _sig(q[1]) - (s - 1) / 2 + i) / h
                        bw, bh = np.exp(q[2]) * aw / size, np.exp(q[3]) * ah / size
                        pb = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
                        obj = _sig(q[4])
                        if (a, i, j) in pos:
                            total["loss_obj"] += on * _bce(obj, 1.) / n
                            for k in pos[(a, i, j)]:
                                g = gt[b, k]
                                gb = [g[0] - g[2] / 2, g[1] - g[3] / 2, g[0] + g[2] / 2,
                                      g[1] + g[3] / 2]
                                total["loss_iou"] += loss_args["iou_normalizer"] * (
                                    1 - _ciou(pb, gb)) / n
                                t = np.full(nc, eps / 2)
                                t[cls[b, k]] = 1 - eps / 2
                                total["loss_cls"] += loss_args["cls_normalizer"] * _bce(
                                    _sig(q[5:]), t).sum() / n
                        elif max([_iou(pb, tb) for tb in boxes] or [0.]) <= loss_args[
                                "ignore_thresh"]:
                            total["loss_obj"] += on * _bce(obj, 0.) / n
    return total


def test_assignment_best_anchor_and_iou_thresh():
    size = 416.
    all_anchors = np.array(ANCHORS, "float32") / size
    # a truth shaped exactly like anchor 4, centred in cell (row 3, col 5) of a 13x13 grid
    gt = np.zeros([1, 2, 4], "float32")
    gt[0, 0] = [5.5 / 13, 3.5 / 13, 135 / size, 169 / size]
    rows = assign_targets(gt, all_anchors, [3, 4, 5], (13, 13), iou_thresh=1.0)
    assert rows.tolist() == [[0, 1, 3, 5, 0]]
    assert assign_targets(gt, all_anchors, [0, 1, 2], (26, 26), 1.0).shape == (0, 5)
    # iou_thresh 0.25: anchor 3 (81x82, shape IoU 0.29) joins, anchor 5 (344x319, 0.21) does not
    rows = assign_targets(gt, all_anchors, [3, 4, 5], (13, 13), iou_thresh=0.25)
    assert rows[:, 1].tolist() == [0, 1]


@pytest.mark.parametrize("iou_thresh,eps", [(1.0, 0.0), (0.2, 0.1)])
def test_matches_numpy_reference(iou_thresh, eps):
    rng = np.random.RandomState(0)
    size = 64
    outs = [rng.uniform(-1, 1, (2, 3 * 8, 2, 2)).astype("float32"),
            rng.uniform(-1, 1, (2, 3 * 8, 4, 4)).astype("float32")]
    gt = np.zeros([2, 4, 4], "float32")
    gt[0, :3] = [[0.3, 0.4, 0.3, 0.5], [0.7, 0.6, 0.2, 0.15], [0.2, 0.8, 0.6, 0.35]]
    gt[1, :2] = [[0.55, 0.45, 0.5, 0.4], [0.1, 0.1, 0.15, 0.2]]
    cls = np.array([[0, 2, 1, 0], [1, 1, 0, 0]])
    args = dict(ignore_thresh=0.5, iou_thresh=iou_thresh, iou_normalizer=0.07,
                cls_normalizer=0.5, obj_normalizer=[0.4, 4.0], label_smooth_eps=eps)
    loss = YOLOv4Loss(num_classes=3, iou_loss_type="ciou", **args)
    got = loss([paddle.to_tensor(o) for o in outs],
               {"gt_bbox": paddle.to_tensor(gt), "gt_class": paddle.to_tensor(cls[..., None]),
                "image": paddle.zeros([2, 3, size, size])}, LEVELS)
    ref = _reference(outs, gt, cls, size, args)
    for k, v in ref.items():
        assert v > 0
        assert float(got[k]) == pytest.approx(v, rel=1e-4), k
    assert float(got["loss"]) == pytest.approx(sum(ref.values()), rel=1e-4)


def test_sgd_steps_lower_the_tiny_loss():
    cfg = ppdet_lite.load_config(os.path.join(ROOT, "configs", "yolov4_tiny.yml"),
                                 overrides={"num_classes": 2})
    model = ppdet_lite.build_model(cfg)
    model.train()
    rng = np.random.RandomState(0)
    inputs = {"image": paddle.to_tensor(rng.uniform(0, 1, (2, 3, 64, 64)).astype("float32")),
              "gt_bbox": paddle.to_tensor(np.array([[[0.5, 0.5, 0.4, 0.5], [0, 0, 0, 0]],
                                                    [[0.3, 0.6, 0.2, 0.2], [0.7, 0.3, 0.3, 0.4]]],
                                                   "float32")),
              "gt_class": paddle.to_tensor(np.array([[[1], [0]], [[0], [1]]], "int32"))}
    opt = paddle.optimizer.Momentum(0.001, parameters=model.parameters(), momentum=0.9)
    first = None
    for _ in range(6):
        losses = model(inputs)
        assert set(losses) == {"loss", "loss_iou", "loss_obj", "loss_cls"}
        losses["loss"].backward()
        opt.step()
        opt.clear_grad()
        first = first if first is not None else float(losses["loss"])
    assert float(losses["loss"]) < 0.8 * first

"""YOLOv4Loss: darknet's [yolo] training objective (yolo_layer.c) as a loss over all levels.

Targets: ``gt_bbox`` [N, K, 4] normalized cx, cy, w, h (rows with w or h <= 0 are padding),
``gt_class`` [N, K, 1]; the input size comes from ``image`` [N, 3, H, W]. Matching, as darknet:
- a truth goes to the cell holding its centre, with the anchor (of all levels' anchors) whose
  shape IoU with it is best, when that anchor is one of this level's;
- with ``iou_thresh`` < 1 also to every other anchor of this level whose shape IoU > iou_thresh
  (multi-anchor assignment, yolov4.cfg 0.213, Scaled-YOLOv4 0.2);
- a prediction whose box overlaps some truth by more than ``ignore_thresh`` is not a negative.
Terms (summed over positives / cells, averaged over the batch, summed over levels):
    loss_iou = iou_normalizer · Σ_pos (1 − CIoU) (``iou_loss_type``, darknet's
               iou_loss: ciou, diou, giou or iou)
    loss_obj = obj_normalizer · Σ BCE(obj, 1 at positives, 0 at non-ignored negatives)
               (obj_normalizer: one value or one per level, deepest first: yolov4-csp's
               [yolo] layers use 4.0 / 1.0 / 0.4 from stride 8 up)
    loss_cls = cls_normalizer · Σ_pos Σ_c BCE(cls_c, t_c),  t = 1 − ε/2 for the class, ε/2 others
ε = ``label_smooth_eps`` (darknet's). Darknet writes gradients by hand; this is the loss whose
gradient they approximate. Two darknet details differ on purpose: its cls_normalizer only acts
with counters_per_class (here it always weights loss_cls), and its max_delta clipping and the
(2 − w·h) box scale are not applied to CIoU terms here. With ``new_coords`` the head output is
already a probability (BCE on it); otherwise BCE takes logits.
"""
from typing import Dict, List, Sequence, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.registry import register
from .iou_loss import bbox_iou
from .yolo_loss import MAX_LOG_SIZE, batch_iou_similarity

__all__ = ["YOLOv4Loss", "assign_targets"]


def _shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """[K, 2] x [A, 2] → [K, A] IoU of boxes sharing a centre."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1],
                                                                         anchors[None, :, 1])
    union = wh[:, None].prod(-1) + anchors[None].prod(-1) - inter
    return inter / np.maximum(union, 1e-12)


def assign_targets(gt_bbox: np.ndarray, all_anchors: np.ndarray, mask: List[int], grid_hw,
                   iou_thresh: float) -> np.ndarray:
    """Positives of one level: rows (image, anchor slot in ``mask``, row, col, truth index).
    ``all_anchors`` [A, 2] normalized to the input size."""
    h, w = grid_hw
    rows = []
    for b in range(gt_bbox.shape[0]):
        valid = np.nonzero((gt_bbox[b, :, 2] > 0) & (gt_bbox[b, :, 3] > 0))[0]
        if valid.size == 0:
            continue
        ious = _shape_iou(gt_bbox[b, valid, 2:4], all_anchors)
        for k, iou in zip(valid, ious):
            col = min(int(gt_bbox[b, k, 0] * w), w - 1)
            row = min(int(gt_bbox[b, k, 1] * h), h - 1)
            best = int(np.argmax(iou))
            for slot, n in enumerate(mask):
                if n == best or (iou_thresh < 1. and iou[n] > iou_thresh):
                    rows.append((b, slot, row, col, k))
    return np.array(rows, dtype="int64").reshape(-1, 5)


@register
class YOLOv4Loss(nn.Layer):
    """``forward(outputs, targets, levels)`` → dict(loss_iou, loss_obj, loss_cls, loss).
    ``outputs``/``levels`` as ``YOLOv4Head`` (deepest first)."""

    def __init__(self, num_classes: int = 80, ignore_thresh: float = 0.7,
                 iou_thresh: float = 1.0, iou_loss_type: str = "ciou", iou_normalizer: float = 0.07,
                 cls_normalizer: float = 1.0,
                 obj_normalizer: Union[float, Sequence[float]] = 1.0,
                 label_smooth_eps: float = 0.0):
        super().__init__()
        if iou_loss_type not in ("ciou", "diou", "giou", "iou"):
            raise ValueError(f"YOLOv4Loss.iou_loss_type must be ciou, diou, giou or iou, got "
                             f"{iou_loss_type!r} (darknet's mse is not implemented)")
        self.num_classes = num_classes
        self.ignore_thresh = ignore_thresh
        self.iou_thresh = iou_thresh
        self.iou_loss_type = iou_loss_type
        self.iou_normalizer = iou_normalizer
        self.cls_normalizer = cls_normalizer
        self.obj_normalizer = obj_normalizer
        self.label_smooth_eps = label_smooth_eps

    def _bce(self, p, t, probs: bool):
        if probs:
            return F.binary_cross_entropy(p.clip(1e-7, 1 - 1e-7), t, reduction="none")
        return F.binary_cross_entropy_with_logits(p, t, reduction="none")

    def _level(self, out, level, gt_bbox, gt_np, gt_class_np, in_hw, obj_normalizer):
        n, c, h, w = out.shape
        na, nc = len(level["anchors"]), self.num_classes
        probs, s = level["new_coords"], level["scale_x_y"]
        p = out.reshape([n, na, c // na, h, w]).transpose([0, 1, 3, 4, 2])  # [N, na, H, W, C]
        anchors = paddle.to_tensor(np.array(level["anchors"], "float32") / in_hw[::-1])
        xy = p[..., 0:2] if probs else F.sigmoid(p[..., 0:2])
        gy, gx = paddle.meshgrid(paddle.arange(h, dtype="float32"),
                                 paddle.arange(w, dtype="float32"))
        grid = paddle.stack([gx, gy], -1).reshape([1, 1, h, w, 2])
        cxy = (xy * s - 0.5 * (s - 1.) + grid) / paddle.to_tensor([w, h], "float32")
        twh = p[..., 2:4]
        wh = (4. * twh * twh if probs else paddle.exp(twh.clip(max=MAX_LOG_SIZE))) \
            * anchors.reshape([1, na, 1, 1, 2])  # see MAX_LOG_SIZE
        pbox = paddle.concat([cxy - wh * 0.5, cxy + wh * 0.5], -1)  # [N, na, H, W, 4] xyxy

        gbox = paddle.concat([gt_bbox[..., :2] - gt_bbox[..., 2:] * 0.5,
                              gt_bbox[..., :2] + gt_bbox[..., 2:] * 0.5], -1)
        iou_max = batch_iou_similarity(pbox.reshape([n, -1, 4]), gbox).max(2)
        not_ignored = paddle.cast(iou_max <= self.ignore_thresh, "float32").reshape([n, na, h, w])
        not_ignored.stop_gradient = True

        all_anchors = np.array(level["all_anchors"], "float32") / in_hw[::-1]
        pos = assign_targets(gt_np, all_anchors, level["mask"], (h, w), self.iou_thresh)
        tobj = np.zeros([n, na, h, w], "float32")
        tobj[pos[:, 0], pos[:, 1], pos[:, 2], pos[:, 3]] = 1.
        tobj = paddle.to_tensor(tobj)
        obj = p[..., 4]
        loss_obj = (self._bce(obj, tobj, probs) * (tobj + (1. - tobj) * not_ignored)).sum()
        losses = {"loss_obj": obj_normalizer * loss_obj / n}
        if pos.shape[0] == 0:
            zero = (p * 0.).sum()
            losses.update(loss_iou=zero, loss_cls=zero)
            return losses
        idx = paddle.to_tensor(pos[:, :4])
        ppos = paddle.gather_nd(p, idx)          # [P, C]
        bpos = paddle.gather_nd(pbox, idx)       # [P, 4]
        truth = paddle.to_tensor(np.concatenate([gt_np[pos[:, 0], pos[:, 4], :2]
                                                 - gt_np[pos[:, 0], pos[:, 4], 2:] / 2,
                                                 gt_np[pos[:, 0], pos[:, 4], :2]
                                                 + gt_np[pos[:, 0], pos[:, 4], 2:] / 2], 1))
        kind = {self.iou_loss_type: True} if self.iou_loss_type != "iou" else {}
        iou = bbox_iou([bpos[:, i] for i in range(4)], [truth[:, i] for i in range(4)], **kind)
        losses["loss_iou"] = self.iou_normalizer * (1. - iou).sum() / n
        eps = self.label_smooth_eps
        tcls = np.full([pos.shape[0], nc], 0.5 * eps, "float32")
        tcls[np.arange(pos.shape[0]), gt_class_np[pos[:, 0], pos[:, 4]]] = 1. - 0.5 * eps
        loss_cls = self._bce(ppos[:, 5:], paddle.to_tensor(tcls), probs).sum()
        losses["loss_cls"] = self.cls_normalizer * loss_cls / n
        return losses

    def forward(self, outputs: List[paddle.Tensor], targets: Dict[str, paddle.Tensor],
                levels: List[Dict]) -> Dict[str, paddle.Tensor]:
        in_hw = np.array(targets["image"].shape[2:4], "float32")
        gt_bbox = paddle.cast(targets["gt_bbox"], "float32")
        gt_np = gt_bbox.numpy()
        gt_class_np = targets["gt_class"].numpy().reshape(gt_np.shape[:2]).astype("int64")
        valid = (gt_np[..., 2] > 0) & (gt_np[..., 3] > 0)
        bad = gt_class_np[valid]
        if bad.size and (bad.min() < 0 or bad.max() >= self.num_classes):
            raise ValueError(f"YOLOv4Loss: gt_class {int(bad.max())} outside "
                             f"0..{self.num_classes - 1}; set num_classes to the dataset's "
                             "class count")
        obj_norm = self.obj_normalizer
        if isinstance(obj_norm, (int, float)):
            obj_norm = [float(obj_norm)] * len(outputs)
        if len(obj_norm) != len(outputs):
            raise ValueError(f"YOLOv4Loss.obj_normalizer has {len(obj_norm)} values for "
                             f"{len(outputs)} levels; give one (or one per level, deepest first)")
        total: Dict[str, paddle.Tensor] = {}
        for out, level, on in zip(outputs, levels, obj_norm):
            for k, v in self._level(out, level, gt_bbox, gt_np, gt_class_np, in_hw, on).items():
                total[k] = total[k] + v if k in total else v
        total["loss"] = total["loss_iou"] + total["loss_obj"] + total["loss_cls"]
        return total

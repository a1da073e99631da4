"""EfficientDet loss: sigmoid focal loss (alpha 0.25, gamma 1.5) over all anchors x classes plus
``box_loss_weight`` x Huber (delta 0.1) on the positive anchors' (ty, tx, th, tw) codes, both
divided by (number of positives in the batch + 1) (the box term also by 4), as the reference.
Anchors are labelled per image by ``anchor_matcher.label_anchors``.
"""
from typing import Dict, List

import numpy as np
import paddle
import paddle.nn.functional as F

from ...core.registry import register
from ..anchor_matcher import label_anchors

__all__ = ["EfficientDetLoss", "flatten_levels"]


def flatten_levels(outs: List[paddle.Tensor], per_anchor: int) -> paddle.Tensor:
    """Per-level [N, A*k, H, W] maps -> [N, sum H*W*A, k] in anchor order (level, y, x, anchor)."""
    # sizes as numbers (0 copies the batch): an export at a fixed input keeps static shapes
    flat = [paddle.transpose(o, [0, 2, 3, 1]).reshape(
        [0, o.shape[1] // per_anchor * o.shape[2] * o.shape[3], per_anchor]) for o in outs]
    return paddle.concat(flat, 1)


@register
class EfficientDetLoss:
    """``__call__(cls_outs, box_outs, targets, anchors)`` -> {'loss', 'loss_cls', 'loss_box'}.

    targets: ``image`` [N,3,H,W] (for the anchor grid), ``gt_bbox`` [N,K,4] xyxy input pixels,
    ``gt_class`` [N,K,1]; rows with class < 0 or zero width/height are padding.
    """

    def __init__(self, match_threshold: float = 0.5, unmatched_threshold: float = 0.5,
                 alpha: float = 0.25, gamma: float = 1.5, delta: float = 0.1,
                 box_loss_weight: float = 50.0):
        self.match_threshold = match_threshold
        self.unmatched_threshold = unmatched_threshold
        self.alpha, self.gamma, self.delta = alpha, gamma, delta
        self.box_loss_weight = box_loss_weight

    def targets(self, anchor_boxes: np.ndarray, gt_bbox: np.ndarray, gt_class: np.ndarray):
        """Numpy labels for a batch: cls [N, A_total] int64, box [N, A_total, 4], positives [N]."""
        cls_t, box_t, pos = [], [], []
        for boxes, classes in zip(gt_bbox, gt_class.reshape(gt_class.shape[0], -1)):
            keep = (classes >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            c, b, n = label_anchors(anchor_boxes, boxes[keep], classes[keep],
                                    self.match_threshold, self.unmatched_threshold)
            cls_t.append(c)
            box_t.append(b)
            pos.append(n)
        return np.stack(cls_t), np.stack(box_t), np.asarray(pos, "float32")

    def __call__(self, cls_outs: List[paddle.Tensor], box_outs: List[paddle.Tensor],
                 targets: Dict[str, paddle.Tensor], anchors) -> Dict[str, paddle.Tensor]:
        num_classes = cls_outs[0].shape[1] // anchors.num_anchors
        anchor_boxes = anchors.boxes(targets["image"].shape[2:])
        cls_t, box_t, pos = self.targets(anchor_boxes, np.asarray(targets["gt_bbox"], "float32"),
                                         np.asarray(targets["gt_class"]))
        logits = flatten_levels(cls_outs, num_classes)
        codes = flatten_levels(box_outs, 4)
        if logits.shape[1] != anchor_boxes.shape[0]:
            raise ValueError(f"EfficientDetLoss: the head gives {logits.shape[1]} anchors, the "
                             f"anchor grid for {targets['image'].shape[2:]} has {anchor_boxes.shape[0]}")
        normalizer = float(pos.sum()) + 1.0
        cls_t = paddle.to_tensor(cls_t)
        onehot = F.one_hot(paddle.clip(cls_t, min=0), num_classes) * \
            (cls_t >= 0).astype("float32").unsqueeze(-1)
        prob = F.sigmoid(logits)
        p_t = onehot * prob + (1. - onehot) * (1. - prob)
        alpha = onehot * self.alpha + (1. - onehot) * (1. - self.alpha)
        ce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
        focal = alpha * paddle.pow(1. - p_t, self.gamma) * ce
        focal = focal * (cls_t != -2).astype("float32").unsqueeze(-1)
        loss_cls = paddle.sum(focal) / normalizer

        box_t = paddle.to_tensor(box_t)
        err = paddle.abs(codes - box_t)
        quad = paddle.clip(err, max=self.delta)
        huber = 0.5 * quad * quad + self.delta * (err - quad)
        huber = huber * (box_t != 0.).astype("float32")
        loss_box = paddle.sum(huber) / (normalizer * 4.)
        return {"loss": loss_cls + self.box_loss_weight * loss_box, "loss_cls": loss_cls,
                "loss_box": loss_box}

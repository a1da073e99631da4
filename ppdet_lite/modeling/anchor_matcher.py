"""EfficientDet's anchor labelling (the reference's ArgMaxMatcher + TargetAssigner, in numpy):
each anchor takes the ground truth of highest IoU; IoU < ``unmatched_threshold`` -> background,
between the thresholds -> ignored, >= ``match_threshold`` -> positive; then every ground truth
is forced onto its best anchor (ties: the lower ground-truth index wins). The reference uses
0.5 / 0.5 (no ignored band; with a band, the reference would train its anchors as background,
here they are left out of the class loss).
"""
from typing import Tuple

import numpy as np

from ..runtime.boxes import box_iou
from .box_coder import encode_boxes

__all__ = ["label_anchors"]

BACKGROUND, IGNORED = -1, -2


def label_anchors(anchors: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray,
                  match_threshold: float = 0.5, unmatched_threshold: float = 0.5
                  ) -> Tuple[np.ndarray, np.ndarray, int]:
    """anchors [A,4], gt_boxes [M,4] (xyxy, same pixels), gt_classes [M] (0-based) ->
    (cls_targets [A] int64: class, -1 background, -2 ignored; box_targets [A,4] float32
    (ty, tx, th, tw), zeros where not positive; number of positives)."""
    num = anchors.shape[0]
    if gt_boxes.shape[0] == 0:
        return np.full([num], BACKGROUND, "int64"), np.zeros([num, 4], "float32"), 0
    # float32 like the reference, so anchors at IoU ~0.5 fall on the same side
    iou = box_iou(gt_boxes.astype("float32"), anchors.astype("float32"), eps=1e-10)  # [M, A]
    matches = iou.argmax(0)
    best = iou.max(0)
    matches = np.where(best < unmatched_threshold, BACKGROUND, matches)
    matches = np.where((best >= unmatched_threshold) & (best < match_threshold), IGNORED, matches)
    forced = iou.argmax(1)
    for row in range(len(forced) - 1, -1, -1):
        matches[forced[row]] = row
    positive = matches >= 0
    cls_targets = np.where(positive, gt_classes[np.maximum(matches, 0)], matches).astype("int64")
    box_targets = np.zeros([num, 4], "float32")
    if positive.any():
        box_targets[positive] = encode_boxes(gt_boxes[matches[positive]].astype("float32"),
                                             anchors[positive])
    return cls_targets, box_targets, int(positive.sum())

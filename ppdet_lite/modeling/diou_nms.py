"""DIoUNMS: darknet's per-class greedy NMS with the DIoU criterion (``nms_kind=greedynms`` /
``diounms`` of the [yolo] layers), as a post-process NMS beside MultiClassNMS and MatrixNMS.

Per image and class, boxes above ``score_threshold`` are taken in descending score order; a kept
box suppresses every later box b with
    IoU(a, b) − (ρ²(a, b) / c²(a, b)) ^ beta_nms  >  nms_threshold
ρ: distance of the centres, c: diagonal of the smallest box enclosing both (darknet's
``box_diounms``; ``greedynms`` is the same with beta 0.6, the default). When c = 0 the criterion
is the IoU. Boxes are continuous coordinates (no +1).

The greedy result is computed as Cluster-NMS (Zheng et al., 2020): iterate
keep ← ¬any_{i<j}(keep_i ∧ S_ij) from keep = all, which reaches greedy NMS's fixed point in at
most as many rounds as boxes (usually a handful). Eager mode only (a data-dependent loop); export
models with ``exclude_nms`` or MultiClassNMS.
"""
from typing import Optional

import paddle

from ..core.registry import register

__all__ = ["DIoUNMS", "diou_matrix"]


def diou_matrix(boxes: paddle.Tensor, beta: float) -> paddle.Tensor:
    """[K, 4] xyxy → [K, K] IoU − (ρ²/c²)^beta (IoU where c = 0)."""
    x1, y1, x2, y2 = [boxes[:, i] for i in range(4)]
    area = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    iw = (paddle.minimum(x2[:, None], x2[None]) - paddle.maximum(x1[:, None], x1[None])).clip(0)
    ih = (paddle.minimum(y2[:, None], y2[None]) - paddle.maximum(y1[:, None], y1[None])).clip(0)
    inter = iw * ih
    union = area[:, None] + area[None] - inter
    iou = paddle.where(union > 0, inter / paddle.where(union > 0, union, paddle.ones_like(union)),
                       paddle.zeros_like(union))
    cw = paddle.maximum(x2[:, None], x2[None]) - paddle.minimum(x1[:, None], x1[None])
    ch = paddle.maximum(y2[:, None], y2[None]) - paddle.minimum(y1[:, None], y1[None])
    c2 = cw * cw + ch * ch
    cx, cy = (x1 + x2) * 0.5, (y1 + y2) * 0.5
    rho2 = (cx[:, None] - cx[None]) ** 2 + (cy[:, None] - cy[None]) ** 2
    safe_c2 = paddle.where(c2 > 0, c2, paddle.ones_like(c2))
    return paddle.where(c2 > 0, iou - paddle.pow(rho2 / safe_c2, beta), iou)


@register
class DIoUNMS:
    """``__call__(bboxes [N,M,4], scores [N,nc,M])`` → (out [K,6] rows (class, score, x1, y1,
    x2, y2) grouped by image, score-descending within an image, bbox_num [N] int32, None).

    ``nms_top_k``: candidates per class kept before NMS (-1: all); ``keep_top_k``: detections
    per image after NMS (-1: all).
    """

    def __init__(self, score_threshold: float = 0.005, nms_threshold: float = 0.45,
                 beta_nms: float = 0.6, nms_top_k: int = 1000, keep_top_k: int = 100):
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.beta_nms = beta_nms
        self.nms_top_k = nms_top_k
        self.keep_top_k = keep_top_k

    def _one_class(self, boxes: paddle.Tensor, scores: paddle.Tensor) -> Optional[paddle.Tensor]:
        idx = paddle.nonzero(scores > self.score_threshold).reshape([-1])
        if idx.shape[0] == 0:
            return None
        order = paddle.argsort(scores[idx], descending=True)
        if self.nms_top_k > 0:
            order = order[:self.nms_top_k]
        idx = idx[order]
        sup = diou_matrix(boxes[idx], self.beta_nms) > self.nms_threshold
        sup = paddle.triu(paddle.cast(sup, "float32"), diagonal=1)  # i suppresses later j
        keep = paddle.ones([idx.shape[0]], "float32")
        for _ in range(idx.shape[0]):
            new = paddle.cast((keep.reshape([-1, 1]) * sup).max(0) == 0, "float32")
            if bool(paddle.all(new == keep)):
                break
            keep = new
        return idx[paddle.nonzero(keep).reshape([-1])]

    def __call__(self, bboxes: paddle.Tensor, scores: paddle.Tensor, *args):
        outs, nums = [], []
        for b in range(bboxes.shape[0]):
            rows = []
            for c in range(scores.shape[1]):
                kept = self._one_class(bboxes[b], scores[b, c])
                if kept is None:
                    continue
                rows.append(paddle.concat([
                    paddle.full([kept.shape[0], 1], c, "float32"),
                    scores[b, c][kept].reshape([-1, 1]), bboxes[b][kept]], axis=1))
            det = paddle.concat(rows) if rows else paddle.zeros([0, 6], "float32")
            if det.shape[0]:
                det = det[paddle.argsort(det[:, 1], descending=True)]
                if self.keep_top_k > 0:
                    det = det[:self.keep_top_k]
            outs.append(det)
            nums.append(det.shape[0])
        return paddle.concat(outs), paddle.to_tensor(nums, dtype="int32"), None

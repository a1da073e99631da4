"""EfficientDet post-process, as the reference's DetBenchPredict: the top ``max_detection_points``
(anchor, class) logits over all levels, their boxes decoded from the anchors, clipped to the
original image, per-class NMS (IoU ``nms_threshold``, no score threshold), the best
``max_det_per_image`` kept. Uses Paddle's ``multiclass_nms3`` op (export friendly) on a
[N, nc, K] score tensor holding each candidate's score under its own class only.
"""
from typing import List, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from ..core.registry import register
from .box_coder import decode_boxes
from .losses.efficientdet_loss import flatten_levels
from .post_process import MultiClassNMS

__all__ = ["EfficientDetPostProcess"]


@register
class EfficientDetPostProcess:
    """``__call__(cls_outs, box_outs, anchor_boxes [A,4] xyxy, scale_factor [N,2])`` ->
    (bbox [M,6] rows (class, score, x1, y1, x2, y2) in original-image pixels, bbox_num [N])."""

    def __init__(self, max_detection_points: int = 5000, nms_threshold: float = 0.5,
                 max_det_per_image: int = 100, clip_bbox: bool = True):
        self.max_detection_points = max_detection_points
        self.max_det_per_image = max_det_per_image
        self.clip_bbox = clip_bbox
        # score_threshold 0 with strict '>' keeps every candidate (sigmoid > 0) and drops the
        # zero entries of the other classes; nms_top_k max_detection_points keeps all of a
        # class's candidates as -1 would (paddle2onnx turns -1 into an NMS keeping one box)
        self.nms = MultiClassNMS(score_threshold=0.0, nms_top_k=max_detection_points,
                                 keep_top_k=max_det_per_image,
                                 nms_threshold=nms_threshold, normalized=True)

    def candidates(self, cls_outs: List[paddle.Tensor], box_outs: List[paddle.Tensor],
                   anchor_boxes) -> Tuple[paddle.Tensor, paddle.Tensor, paddle.Tensor]:
        """Top-k: (logits [N,K], classes [N,K] int64, boxes [N,K,4] xyxy input pixels)."""
        nc = cls_outs[0].shape[1] // (box_outs[0].shape[1] // 4)
        logits = flatten_levels(cls_outs, nc)
        codes = flatten_levels(box_outs, 4)
        total = logits.shape[1]
        k = min(self.max_detection_points, total * nc)
        # static sizes (0 copies the batch), so that an export keeps K known (paddle2onnx's
        # NMS needs it); [1]-shaped nc (a Python int becomes a 0-D constant, which stops Lite)
        top, idx = paddle.topk(logits.reshape([0, total * nc]), k, axis=1)
        num = paddle.full([1], nc, idx.dtype)
        anchor_idx, classes = idx // num, idx % num
        # each image's codes at its anchors: a gather on the flattened batch (Lite x86 has no
        # take_along_axis kernel)
        start = paddle.arange(paddle.shape(logits)[0], dtype=idx.dtype).unsqueeze(1) * total
        codes = paddle.gather(codes.reshape([-1, 4]), (anchor_idx + start).reshape([-1]))
        anchors = paddle.to_tensor(np.asarray(anchor_boxes, "float32")) \
            if not isinstance(anchor_boxes, paddle.Tensor) else anchor_boxes
        boxes = decode_boxes(codes.reshape([-1, k, 4]),
                             paddle.gather(anchors, anchor_idx.reshape([-1])).reshape([-1, k, 4]))
        return top, classes, boxes

    def __call__(self, cls_outs, box_outs, anchor_boxes, scale_factor: paddle.Tensor,
                 im_shape: paddle.Tensor = None):
        """``im_shape`` [N,2] (h, w of the image inside the input): boxes are clipped to it
        (``clip_bbox``) before going back to original pixels."""
        logits, classes, boxes = self.candidates(cls_outs, box_outs, anchor_boxes)
        nc = cls_outs[0].shape[1] // (box_outs[0].shape[1] // 4)
        boxes = self.to_original(boxes, scale_factor, im_shape)
        scores = F.sigmoid(logits).unsqueeze(1) * \
            F.one_hot(classes, nc).transpose([0, 2, 1])  # [N, nc, K]
        bbox, bbox_num, _ = self.nms(boxes, scores)
        return bbox, bbox_num

    def decode(self, cls_outs, box_outs, anchor_boxes, scale_factor: paddle.Tensor,
               im_shape: paddle.Tensor = None) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """Every anchor, no top-k, no NMS (``export.nms: false``): boxes [N,A,4] in original
        pixels (clipped as ``__call__`` does) and scores [N,nc,A] (sigmoid of every logit)."""
        nc = cls_outs[0].shape[1] // (box_outs[0].shape[1] // 4)
        anchors = paddle.to_tensor(np.asarray(anchor_boxes, "float32")) \
            if not isinstance(anchor_boxes, paddle.Tensor) else anchor_boxes
        boxes = decode_boxes(flatten_levels(box_outs, 4), anchors.unsqueeze(0))
        scores = F.sigmoid(flatten_levels(cls_outs, nc)).transpose([0, 2, 1])
        return self.to_original(boxes, scale_factor, im_shape), scores

    def to_original(self, boxes: paddle.Tensor, scale_factor: paddle.Tensor,
                    im_shape: paddle.Tensor = None) -> paddle.Tensor:
        """boxes [N,K,4] in input pixels -> clipped to ``im_shape`` (``clip_bbox``), then in
        original-image pixels."""
        if self.clip_bbox and im_shape is not None:
            h, w = im_shape[:, 0:1].astype("float32"), im_shape[:, 1:2].astype("float32")
            limit = paddle.concat([w, h, w, h], 1).unsqueeze(1)
            boxes = paddle.minimum(paddle.clip(boxes, min=0.), limit)
        # to original-image pixels: divide x by scale_x, y by scale_y
        sy, sx = scale_factor[:, 0:1], scale_factor[:, 1:2]
        return boxes / paddle.concat([sx, sy, sx, sy], 1).unsqueeze(1)

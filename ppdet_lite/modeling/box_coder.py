"""EfficientDet's box coder (Faster R-CNN style, no scale factors): a box relative to an anchor is
(ty, tx, th, tw) = ((cy - cy_a) / h_a, (cx - cx_a) / w_a, log(h / h_a), log(w / w_a)), with 1e-7
added to every width/height when encoding. The (ty, tx, th, tw) order is the box head's
channel order per anchor, so effdet checkpoints keep their meaning. Boxes are xyxy.
"""
import numpy as np
import paddle

__all__ = ["encode_boxes", "decode_boxes"]

_EPS = 1e-7


def encode_boxes(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """boxes, anchors [K,4] xyxy -> codes [K,4] (ty, tx, th, tw), float32."""
    wa = anchors[:, 2] - anchors[:, 0] + _EPS
    ha = anchors[:, 3] - anchors[:, 1] + _EPS
    xa = (anchors[:, 0] + anchors[:, 2]) / 2
    ya = (anchors[:, 1] + anchors[:, 3]) / 2
    w = boxes[:, 2] - boxes[:, 0] + _EPS
    h = boxes[:, 3] - boxes[:, 1] + _EPS
    x = (boxes[:, 0] + boxes[:, 2]) / 2
    y = (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([(y - ya) / ha, (x - xa) / wa, np.log(h / ha), np.log(w / wa)], 1).astype("float32")


def decode_boxes(codes: paddle.Tensor, anchors: paddle.Tensor) -> paddle.Tensor:
    """codes [..., 4] (ty, tx, th, tw), anchors [..., 4] xyxy (broadcastable) -> boxes [..., 4] xyxy."""
    wa = anchors[..., 2] - anchors[..., 0]
    ha = anchors[..., 3] - anchors[..., 1]
    xa = (anchors[..., 0] + anchors[..., 2]) / 2
    ya = (anchors[..., 1] + anchors[..., 3]) / 2
    w = paddle.exp(codes[..., 3]) * wa
    h = paddle.exp(codes[..., 2]) * ha
    y = codes[..., 0] * ha + ya
    x = codes[..., 1] * wa + xa
    return paddle.stack([x - w / 2., y - h / 2., x + w / 2., y + h / 2.], -1)

"""IoU-based box losses for YOLOv3Loss: ``IouLoss`` (1 - IoU², PP-YOLO) and ``IouAwareLoss``.

Boxes are lists [x1, y1, x2, y2] of equally shaped tensors (e.g. [N, na, H, W, 1]).
"""
import math
from typing import List

import paddle
import paddle.nn.functional as F

from ...core.registry import register

__all__ = ["bbox_iou", "IouLoss", "IouAwareLoss"]


def bbox_iou(box1: List[paddle.Tensor], box2: List[paddle.Tensor], giou: bool = False,
             diou: bool = False, ciou: bool = False, eps: float = 1e-9) -> paddle.Tensor:
    """Element-wise IoU (or GIoU / DIoU / CIoU) of two xyxy box lists; same shape as a coordinate."""
    px1, py1, px2, py2 = box1
    gx1, gy1, gx2, gy2 = box2
    overlap = ((paddle.minimum(px2, gx2) - paddle.maximum(px1, gx1)).clip(0)
               * (paddle.minimum(py2, gy2) - paddle.maximum(py1, gy1)).clip(0))
    area1 = ((px2 - px1) * (py2 - py1)).clip(0)
    area2 = ((gx2 - gx1) * (gy2 - gy1)).clip(0)
    union = area1 + area2 - overlap + eps
    iou = overlap / union
    if not (giou or diou or ciou):
        return iou
    cw = paddle.maximum(px2, gx2) - paddle.minimum(px1, gx1)  # enclosing box
    ch = paddle.maximum(py2, gy2) - paddle.minimum(py1, gy1)
    if giou:
        c_area = cw * ch + eps
        return iou - (c_area - union) / c_area
    c2 = cw ** 2 + ch ** 2 + eps  # enclosing diagonal²
    rho2 = ((px1 + px2 - gx1 - gx2) ** 2 + (py1 + py2 - gy1 - gy2) ** 2) / 4  # centre distance²
    if diou:
        return iou - rho2 / c2
    delta = (paddle.atan((px2 - px1) / (py2 - py1 + eps))
             - paddle.atan((gx2 - gx1) / (gy2 - gy1 + eps)))
    v = (4 / math.pi ** 2) * delta ** 2
    alpha = v / (1 + eps - iou + v)
    alpha.stop_gradient = True
    return iou - (rho2 / c2 + v * alpha)


@register
class IouLoss:
    """loss_weight · (1 - IoU²) (``loss_square``) or loss_weight · (1 - IoU); element-wise."""

    def __init__(self, loss_weight: float = 2.5, giou: bool = False, diou: bool = False,
                 ciou: bool = False, loss_square: bool = True):
        self.loss_weight = loss_weight
        self.giou, self.diou, self.ciou = giou, diou, ciou
        self.loss_square = loss_square

    def __call__(self, pbox, gbox) -> paddle.Tensor:
        iou = bbox_iou(pbox, gbox, giou=self.giou, diou=self.diou, ciou=self.ciou)
        return (1 - (iou * iou if self.loss_square else iou)) * self.loss_weight


@register
class IouAwareLoss(IouLoss):
    """loss_weight · BCE(ioup logits, IoU(pbox, gbox) detached); element-wise."""

    def __init__(self, loss_weight: float = 1.0, giou: bool = False, diou: bool = False,
                 ciou: bool = False):
        super().__init__(loss_weight=loss_weight, giou=giou, diou=diou, ciou=ciou)

    def __call__(self, ioup, pbox, gbox) -> paddle.Tensor:
        iou = bbox_iou(pbox, gbox, giou=self.giou, diou=self.diou, ciou=self.ciou)
        iou.stop_gradient = True
        return F.binary_cross_entropy_with_logits(ioup, iou, reduction="none") * self.loss_weight

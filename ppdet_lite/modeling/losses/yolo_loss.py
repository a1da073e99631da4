"""YOLOv3Loss: the PP-YOLO training loss over all head levels.

Per level, with p the raw head output [N, na*(5+nc), H, W] (IoU-aware heads put na IoU logits
first) and t the Gt2YoloTarget map [N, na, 6+nc, H, W] (tx, ty, tw, th, tscale, tobj, classes):
  loss_xy  = Σ tscale·tobj·(|σ'(x)-tx| + |σ'(y)-ty|)   (BCE instead of L1 when scale_x_y == 1)
  loss_wh  = Σ tscale·tobj·(|w-tw| + |h-th|)
  loss_iou = Σ tscale·tobj·IouLoss(decoded p, decoded t)          (when iou_loss is given)
  loss_iou_aware = Σ tobj·IouAwareLoss(ioup, p, t)                 (when iou_aware_loss is given)
  loss_obj = Σ BCE(obj, tobj>0)·(tobj for positives, ignore-mask for negatives)
  loss_cls = Σ tobj·BCE(cls, tcls)
where σ'(x) = scale_x_y·σ(x) - (scale_x_y-1)/2, sums run over the map and are averaged over the
batch; each term is summed over levels and ``loss`` is the total.
"""
from typing import Dict, List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.registry import register

__all__ = ["YOLOv3Loss", "decode_yolo_xyxy", "batch_iou_similarity", "MAX_LOG_SIZE"]

# log-size logits are clipped here before exp: exp(10) times an anchor is a box thousands of images
# wide (IoU 0 with anything), still finite in float32. Unclipped, one runaway logit (97 on the demo
# once BatchNorm trained on running statistics) gives exp = inf and, through IoU's division, a NaN
# gradient for the whole batch, although that cell's loss weight is 0.
MAX_LOG_SIZE = 10.


def decode_yolo_xyxy(box: List[paddle.Tensor], anchor: Sequence[Sequence[float]],
                     downsample: int) -> List[paddle.Tensor]:
    """Cell offsets / log sizes [x, y, w, h] (each [N,na,H,W,1]) → normalized xyxy list (log sizes
    clipped at MAX_LOG_SIZE)."""
    x, y, w, h = box
    w, h = w.clip(max=MAX_LOG_SIZE), h.clip(max=MAX_LOG_SIZE)
    na, gh, gw = x.shape[1:4]
    gy, gx = paddle.meshgrid(paddle.arange(gh), paddle.arange(gw))
    gx = gx.cast(x.dtype).reshape([1, 1, gh, gw, 1])
    gy = gy.cast(x.dtype).reshape([1, 1, gh, gw, 1])
    anchor = paddle.to_tensor(anchor, dtype=x.dtype).reshape([1, na, 1, 1, 2])
    cx, cy = (x + gx) / gw, (y + gy) / gh
    bw = paddle.exp(w) * anchor[..., 0:1] / (downsample * gw)
    bh = paddle.exp(h) * anchor[..., 1:2] / (downsample * gh)
    return [cx - bw * 0.5, cy - bh * 0.5, cx + bw * 0.5, cy + bh * 0.5]


def batch_iou_similarity(box1: paddle.Tensor, box2: paddle.Tensor, eps: float = 1e-9):
    """Pairwise IoU of xyxy boxes [N,M1,4] × [N,M2,4] → [N,M1,M2]."""
    b1, b2 = box1.unsqueeze(2), box2.unsqueeze(1)
    overlap = (paddle.minimum(b1[..., 2:], b2[..., 2:])
               - paddle.maximum(b1[..., :2], b2[..., :2])).clip(0).prod(-1)
    area1 = (b1[..., 2:] - b1[..., :2]).clip(0).prod(-1)
    area2 = (b2[..., 2:] - b2[..., :2]).clip(0).prod(-1)
    return overlap / (area1 + area2 - overlap + eps)


@register
class YOLOv3Loss(nn.Layer):
    """``forward(inputs, targets, anchors)`` → dict of scalar losses (see module docstring).

    ``inputs``: head outputs per level; ``targets``: dict with ``gt_bbox`` [N,K,4] (normalized
    cx,cy,w,h) and ``target{i}`` per level; ``anchors``: per level list of [w, h] in pixels.
    After each call ``distill_pairs`` holds per level [x, y, w, h, obj, cls] raw logits, each
    [N, na, H, W, 1] (cls [N, na, H, W, nc]).
    """

    def __init__(self, num_classes: int = 80, ignore_thresh: float = 0.7,
                 label_smooth: bool = False, downsample: Sequence[int] = (32, 16, 8),
                 scale_x_y: float = 1., iou_loss=None, iou_aware_loss=None):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_thresh = ignore_thresh
        self.label_smooth = label_smooth
        self.downsample = list(downsample)
        self.scale_x_y = scale_x_y
        self.iou_loss = iou_loss
        self.iou_aware_loss = iou_aware_loss
        self.distill_pairs = []

    def obj_loss(self, pbox, gbox, pobj, tobj):
        """BCE on objectness; negatives whose best IoU with a GT exceeds ignore_thresh are ignored."""
        b = pobj.shape[0]
        pbox = paddle.concat(pbox, axis=-1).reshape([b, -1, 4])
        gbox = paddle.concat([gbox[..., :2] - gbox[..., 2:] * 0.5,
                              gbox[..., :2] + gbox[..., 2:] * 0.5], axis=-1)
        iou_max = batch_iou_similarity(pbox, gbox).max(2)  # [N, na*H*W]
        not_ignored = paddle.cast(iou_max <= self.ignore_thresh, pobj.dtype)
        not_ignored.stop_gradient = True
        pobj, tobj = pobj.reshape([b, -1]), tobj.reshape([b, -1])
        pos = paddle.cast(tobj > 0, pobj.dtype)
        pos.stop_gradient = True
        bce = F.binary_cross_entropy_with_logits(pobj, pos, reduction="none")
        return bce * tobj + bce * (1 - pos) * not_ignored

    def cls_loss(self, pcls, tcls):
        if self.label_smooth:
            delta = min(1. / self.num_classes, 1. / 40)
            is_pos = paddle.cast(tcls > 0., tcls.dtype)
            tcls = (1 - delta) * is_pos + delta * (1 - is_pos)
        return F.binary_cross_entropy_with_logits(pcls, tcls, reduction="none")

    def yolov3_loss(self, p, t, gt_box, anchor, downsample, scale=1., eps=1e-10):
        """Loss terms of one level; see the module docstring."""
        na = len(anchor)
        b, c, h, w = p.shape
        ioup = None
        if c == na * (self.num_classes + 6):  # IoU-aware head: na IoU logits come first
            ioup, p = p[:, :na].unsqueeze(-1), p[:, na:]
        p = p.reshape([b, na, -1, h, w]).transpose([0, 1, 3, 4, 2])
        x, y, pw, ph, obj, pcls = paddle.split(p, [1, 1, 1, 1, 1, self.num_classes], axis=-1)
        self.distill_pairs.append([x, y, pw, ph, obj, pcls])
        t = t.transpose([0, 1, 3, 4, 2])
        tx, ty, tw, th, tscale, tobj, tcls = paddle.split(
            t, [1, 1, 1, 1, 1, 1, self.num_classes], axis=-1)
        weight = tscale * tobj

        def batch_mean(v):
            return v.sum([1, 2, 3, 4]).mean()

        x = scale * F.sigmoid(x) - 0.5 * (scale - 1.)
        y = scale * F.sigmoid(y) - 0.5 * (scale - 1.)
        if abs(scale - 1.) < eps:
            loss_xy = (F.binary_cross_entropy(x, tx, reduction="none")
                       + F.binary_cross_entropy(y, ty, reduction="none"))
        else:
            loss_xy = paddle.abs(x - tx) + paddle.abs(y - ty)
        losses = {"loss_xy": batch_mean(weight * loss_xy),
                  "loss_wh": batch_mean(weight * (paddle.abs(pw - tw) + paddle.abs(ph - th)))}
        pbox = decode_yolo_xyxy([x, y, pw, ph], anchor, downsample)
        if self.iou_loss is not None or self.iou_aware_loss is not None:
            gbox = decode_yolo_xyxy([tx, ty, tw, th], anchor, downsample)
            if self.iou_loss is not None:
                losses["loss_iou"] = batch_mean(self.iou_loss(pbox, gbox) * weight)
            if self.iou_aware_loss is not None:
                if ioup is None:
                    raise ValueError("YOLOv3Loss: iou_aware_loss is set but the head is not "
                                     "IoU-aware; set YOLOv3Head.iou_aware: true")
                losses["loss_iou_aware"] = batch_mean(self.iou_aware_loss(ioup, pbox, gbox) * tobj)
        losses["loss_obj"] = self.obj_loss(pbox, gt_box, obj, tobj).sum(-1).mean()
        losses["loss_cls"] = batch_mean(self.cls_loss(pcls, tcls) * tobj)
        return losses

    def forward(self, inputs: List[paddle.Tensor], targets: Dict[str, paddle.Tensor],
                anchors) -> Dict[str, paddle.Tensor]:
        self.distill_pairs.clear()
        total: Dict[str, paddle.Tensor] = {}
        for i, (p, anchor, downsample) in enumerate(zip(inputs, anchors, self.downsample)):
            level = self.yolov3_loss(p, targets[f"target{i}"], targets["gt_bbox"], anchor,
                                     downsample, self.scale_x_y)
            for k, v in level.items():
                total[k] = total[k] + v if k in total else v
        total["loss"] = paddle.add_n(list(total.values()))
        return total

"""YOLOv3Head: one 1x1 output conv per level (PP-YOLO, PP-YOLOv2, PP-YOLO Tiny).

Output channels per level: na·(5+nc) laid out per anchor as [x, y, w, h, obj, cls...]; an
IoU-aware head puts na IoU logits first (na·(6+nc) channels). Sublayer names
``yolo_output.{i}`` equal PaddleDetection's.
"""
from typing import Dict, List, Optional, Sequence

import paddle
import paddle.nn as nn
from paddle import ParamAttr
from paddle.regularizer import L2Decay

from ...core.registry import register
from ..post_process import iou_aware_rescore

__all__ = ["YOLOv3Head"]


@register
class YOLOv3Head(nn.Layer):
    """``forward(feats, targets=None)``: feats are the neck maps, deepest first.

    Training: returns ``loss(outputs, targets, anchors)`` (a dict of losses). Eval: the list of
    raw maps [N, C, H, W] (NCHW whatever ``data_format``); IoU-aware heads return them with the
    objectness already rescored (see ``post_process.iou_aware_rescore``) and the IoU channels
    removed, ready for ``YOLOBox``.
    """

    def __init__(self, in_channels: Sequence[int] = (1024, 512, 256),
                 anchors: Sequence[Sequence[int]] = ((10, 13), (16, 30), (33, 23), (30, 61),
                                                     (62, 45), (59, 119), (116, 90), (156, 198),
                                                     (373, 326)),
                 anchor_masks: Sequence[Sequence[int]] = ((6, 7, 8), (3, 4, 5), (0, 1, 2)),
                 num_classes: int = 80, loss=None, iou_aware: bool = False,
                 iou_aware_factor: float = 0.4, data_format: str = "NCHW",
                 obj_bias_init: Optional[float] = None, cls_bias_init: Optional[float] = None):
        super().__init__()
        if len(in_channels) != len(anchor_masks):
            raise ValueError(f"YOLOv3Head: {len(in_channels)} input maps but "
                             f"{len(anchor_masks)} anchor_masks; give one mask per level")
        for mask in anchor_masks:
            for i in mask:
                if not 0 <= i < len(anchors):
                    raise ValueError(f"YOLOv3Head.anchor_masks index {i} is out of range for "
                                     f"{len(anchors)} anchors")
        self.in_channels = list(in_channels)
        self.num_classes = num_classes
        self.loss = loss
        self.iou_aware = iou_aware
        self.iou_aware_factor = iou_aware_factor
        self.data_format = data_format
        # per level: anchors [[w, h], ...] and the flat list yolo_box wants
        self.anchors = [[list(anchors[i]) for i in mask] for mask in anchor_masks]
        self.mask_anchors = [[v for a in level for v in a] for level in self.anchors]
        self.num_outputs = len(self.anchors)

        self.yolo_outputs = []
        for i, ch_in in enumerate(self.in_channels):
            na = len(self.anchors[i])
            conv = nn.Conv2D(ch_in, na * (num_classes + (6 if iou_aware else 5)), 1,
                             data_format=data_format,
                             bias_attr=ParamAttr(regularizer=L2Decay(0.)))
            conv.skip_quant = True  # QAT leaves the output convs in float
            self.yolo_outputs.append(self.add_sublayer(f"yolo_output.{i}", conv))
        if obj_bias_init is not None or cls_bias_init is not None:
            self._init_bias(obj_bias_init, cls_bias_init)

    def _init_bias(self, obj_bias_init, cls_bias_init):
        no = self.num_classes + 5
        for conv, anchors in zip(self.yolo_outputs, self.anchors):
            bias = conv.bias.numpy()
            start = len(anchors) if self.iou_aware else 0
            for a in range(len(anchors)):
                base = start + a * no
                if obj_bias_init is not None:
                    bias[base + 4] = obj_bias_init
                if cls_bias_init is not None:
                    bias[base + 5:base + no] = cls_bias_init
            conv.bias.set_value(bias)

    def forward(self, feats: List[paddle.Tensor],
                targets: Optional[Dict[str, paddle.Tensor]] = None):
        if len(feats) != self.num_outputs:
            raise ValueError(f"YOLOv3Head expects {self.num_outputs} maps, got {len(feats)}")
        outs = []
        for feat, conv in zip(feats, self.yolo_outputs):
            out = conv(feat)
            if self.data_format == "NHWC":
                out = paddle.transpose(out, [0, 3, 1, 2])
            outs.append(out)
        if self.training:
            if self.loss is None:
                raise ValueError("YOLOv3Head has no loss: build it with loss=YOLOv3Loss(...)")
            return self.loss(outs, targets, self.anchors)
        if self.iou_aware:
            return [iou_aware_rescore(out, len(a), self.iou_aware_factor)
                    for out, a in zip(outs, self.anchors)]
        return outs

"""YOLOv4Head: per level a head conv and the 1x1 output conv (darknet's last [convolutional]
before each [yolo]); holds the [yolo] layers' facts (anchors, masks, scale_x_y, new_coords).

Levels are deepest first, like YOLOv3Head. Per level i:
    conv3x3(head_channels[i]) → conv1x1(na·(5+nc), bias)            (``sam: false``)
    a = conv1x1(c); conv1x1(c)(a · σ(conv1x1(c)(a))) → conv1x1(...)   (``sam: true``, P7's cfg)
With ``new_coords`` the output conv is followed by a sigmoid (darknet ``activation=logistic``),
otherwise it is linear. Output maps [N, na·(5+nc), H, W], per anchor [x, y, w, h, obj, cls...].
"""
from typing import Dict, List, Optional, Sequence, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.registry import register
from ..backbones.cspdarknet import dark_conv

__all__ = ["YOLOv4Head"]


class SAMHeadConv(nn.Layer):
    """a = 1x1(x); out = 1x1(a · σ(1x1(a))), cspx-p7-mish.cfg's [sam] head.
    [N, ci, H, W] → [N, c, H, W]."""

    def __init__(self, ch_in: int, ch: int, act: str, norm_type: str):
        super().__init__()
        self.conv1 = dark_conv(ch_in, ch, 1, act=act, norm_type=norm_type)
        self.attention = dark_conv(ch, ch, 1, act="sigmoid", norm_type=norm_type)
        self.conv2 = dark_conv(ch, ch, 1, act=act, norm_type=norm_type)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        a = self.conv1(x)
        return self.conv2(a * self.attention(a))

    def to_darknet(self, g, src: int) -> int:
        a = g.conv(self.conv1, src)
        return g.conv(self.conv2, g.sam(g.conv(self.attention, a), a))


@register
class YOLOv4Head(nn.Layer):
    """``forward(feats, targets=None)``; feats are the neck maps, deepest first.

    Training: ``loss(outputs, targets, levels)``. Eval: the output maps (see module doc).
    ``obj_bias_init`` / ``cls_bias_init`` set the output convs' objectness / class biases
    (e.g. -4.6, a 0.01 prior, to train from scratch).
    ``levels``: per level dict(anchors=[[w, h], ...] in input pixels, scale_x_y, new_coords,
    mask, all_anchors).
    """

    def __init__(self, in_channels: Sequence[int] = (512, 256, 128),
                 head_channels: Sequence[int] = (1024, 512, 256),
                 anchors: Sequence[Sequence[float]] = ((12, 16), (19, 36), (40, 28), (36, 75),
                                                       (76, 55), (72, 146), (142, 110),
                                                       (192, 243), (459, 401)),
                 anchor_masks: Sequence[Sequence[int]] = ((6, 7, 8), (3, 4, 5), (0, 1, 2)),
                 scale_x_y: Union[float, Sequence[float]] = (1.05, 1.1, 1.2),
                 new_coords: bool = False, num_classes: int = 80, act: str = "leaky",
                 sam: bool = False, loss=None, norm_type: str = "bn",
                 obj_bias_init: Optional[float] = None, cls_bias_init: Optional[float] = None):
        super().__init__()
        n = len(in_channels)
        if isinstance(scale_x_y, (int, float)):
            scale_x_y = [float(scale_x_y)] * n
        for name, value in (("head_channels", head_channels), ("anchor_masks", anchor_masks),
                            ("scale_x_y", scale_x_y)):
            if len(value) != n:
                raise ValueError(f"YOLOv4Head: {n} input maps but {len(value)} {name}; give "
                                 "one per level (deepest first)")
        for mask in anchor_masks:
            if any(not 0 <= i < len(anchors) for i in mask):
                raise ValueError(f"YOLOv4Head.anchor_masks {list(mask)} index past the "
                                 f"{len(anchors)} anchors")
        self.num_classes = num_classes
        self.new_coords = bool(new_coords)
        self.loss = loss
        self.all_anchors = [list(a) for a in anchors]
        self.anchor_masks = [list(m) for m in anchor_masks]
        self.anchors = [[list(anchors[i]) for i in mask] for mask in anchor_masks]
        self.mask_anchors = [[v for a in level for v in a] for level in self.anchors]
        self.scale_x_y = [float(s) for s in scale_x_y]
        self.head_convs = nn.LayerList()
        self.yolo_outputs = nn.LayerList()
        for ch_in, ch, mask in zip(in_channels, head_channels, anchor_masks):
            self.head_convs.append(SAMHeadConv(ch_in, ch, act, norm_type) if sam
                                   else dark_conv(ch_in, ch, 3, act=act, norm_type=norm_type))
            conv = nn.Conv2D(ch, len(mask) * (num_classes + 5), 1)
            conv.skip_quant = True  # QAT leaves the output convs in float
            self.yolo_outputs.append(conv)
        if obj_bias_init is not None or cls_bias_init is not None:
            no = num_classes + 5
            for conv in self.yolo_outputs:
                bias = conv.bias.numpy().reshape([-1, no])
                if obj_bias_init is not None:
                    bias[:, 4] = obj_bias_init
                if cls_bias_init is not None:
                    bias[:, 5:] = cls_bias_init
                conv.bias.set_value(bias.reshape([-1]))

    @property
    def levels(self) -> List[Dict]:
        """Per level: anchors, scale_x_y, new_coords, and (for the loss's anchor matching)
        the anchor ``mask`` into ``all_anchors``."""
        return [dict(anchors=a, scale_x_y=s, new_coords=self.new_coords, mask=m,
                     all_anchors=self.all_anchors)
                for a, s, m in zip(self.anchors, self.scale_x_y, self.anchor_masks)]

    def forward(self, feats: List[paddle.Tensor],
                targets: Optional[Dict[str, paddle.Tensor]] = None) -> List[paddle.Tensor]:
        if len(feats) != len(self.yolo_outputs):
            raise ValueError(f"YOLOv4Head expects {len(self.yolo_outputs)} maps, got {len(feats)}")
        outs = []
        for feat, head, conv in zip(feats, self.head_convs, self.yolo_outputs):
            out = conv(head(feat))
            outs.append(F.sigmoid(out) if self.new_coords else out)
        if self.training:
            if self.loss is None:
                raise ValueError("YOLOv4Head has no loss: build it with loss=YOLOv4Loss(...)")
            return self.loss(outs, targets, self.levels)
        return outs

    def to_darknet(self, g, level: int, src: int) -> int:
        """Darknet layers of head ``level`` on layer ``src``: head conv(s), output conv, [yolo]."""
        head = self.head_convs[level]
        x = head.to_darknet(g, src) if isinstance(head, SAMHeadConv) else g.conv(head, src)
        x = g.conv(self.yolo_outputs[level], x, act="sigmoid" if self.new_coords else None)
        return g.yolo(x, classes=self.num_classes, mask=self.anchor_masks[level],
                      anchors=self.all_anchors, scale_x_y=self.scale_x_y[level],
                      new_coords=self.new_coords)

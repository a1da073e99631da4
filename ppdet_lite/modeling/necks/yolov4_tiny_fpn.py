"""YOLOv4TinyFPN: the neck of yolov4-tiny.cfg (leaky 0.1).

Input: backbone maps [C4 (256, stride 16), C5 (512, stride 32)]. Output, deepest first:
    P5 = conv1x1(C5)                                   (``channels`` 256)
    P4 = concat(up2(conv1x1(P5) → ``up_channels``), C4)  (128 + 256 = 384)
``to_darknet`` emits head 0 right after P5, as the cfg does.
"""
from typing import Callable, List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.registry import register
from ..backbones.cspdarknet import dark_conv

__all__ = ["YOLOv4TinyFPN"]


@register
class YOLOv4TinyFPN(nn.Layer):
    """See the module docstring."""

    def __init__(self, in_channels: Sequence[int] = (256, 512), channels: int = 256,
                 up_channels: int = 128, act: str = "leaky", norm_type: str = "bn"):
        super().__init__()
        if len(in_channels) != 2:
            raise ValueError(f"YOLOv4TinyFPN takes 2 maps (stride 16, 32), got {len(in_channels)}")
        self.conv_p5 = dark_conv(in_channels[1], channels, 1, act=act, norm_type=norm_type)
        self.conv_up = dark_conv(channels, up_channels, 1, act=act, norm_type=norm_type)
        self.out_channels: List[int] = [channels, up_channels + in_channels[0]]

    def forward(self, feats: List[paddle.Tensor]) -> List[paddle.Tensor]:
        p5 = self.conv_p5(feats[1])
        up = F.interpolate(self.conv_up(p5), scale_factor=2., mode="nearest")
        return [p5, paddle.concat([up, feats[0]], axis=1)]

    def to_darknet(self, g, feats: List[int],
                   emit_head: Optional[Callable[[int, int], None]] = None) -> List[int]:
        p5 = g.conv(self.conv_p5, feats[1])
        if emit_head is not None:
            emit_head(0, p5)
        p4 = g.route([g.upsample(g.conv(self.conv_up, p5), 2), feats[0]])
        if emit_head is not None:
            emit_head(1, p4)
        return [p5, p4]

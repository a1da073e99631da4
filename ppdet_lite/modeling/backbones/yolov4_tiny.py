"""YOLOv4-tiny backbone (darknet's yolov4-tiny.cfg), leaky 0.1 throughout.

Input ``inputs['image']`` [N, 3, H, W]. Two 3x3/s2 convs (32, 64), then three tiny CSP blocks of
width c = 64, 128, 256, each (darknet layer order):
    a = conv3x3(c); b = conv3x3(c/2) on the second channel half of a (route groups=2 group_id=1);
    d = conv3x3(c/2)(b); e = conv1x1(c)(concat(d, b)); out = maxpool2/s2(concat(a, e))
and a last conv3x3 (512). Outputs (shallowest first): ``e`` of the last block (256 channels,
stride 16) and the last conv (512, stride 32).
"""
from typing import Dict, List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.registry import register
from .cspdarknet import dark_conv

__all__ = ["TinyCSPBlock", "YOLOv4TinyBackbone"]


class TinyCSPBlock(nn.Layer):
    """[N, ch_in, H, W] → (pooled [N, 2c, ceil(H/2), ceil(W/2)], e [N, c, H, W])."""

    def __init__(self, ch_in: int, ch: int, act: str = "leaky", norm_type: str = "bn"):
        super().__init__()
        self.conv1 = dark_conv(ch_in, ch, 3, act=act, norm_type=norm_type)
        self.conv2 = dark_conv(ch // 2, ch // 2, 3, act=act, norm_type=norm_type)
        self.conv3 = dark_conv(ch // 2, ch // 2, 3, act=act, norm_type=norm_type)
        self.conv4 = dark_conv(ch, ch, 1, act=act, norm_type=norm_type)
        self.ch = ch

    def forward(self, x: paddle.Tensor):
        a = self.conv1(x)
        b = self.conv2(a[:, self.ch // 2:])
        e = self.conv4(paddle.concat([self.conv3(b), b], axis=1))
        # darknet pads the 2x2/s2 pool at the right/bottom: ceil mode for odd sizes
        return F.max_pool2d(paddle.concat([a, e], axis=1), 2, 2, ceil_mode=True), e

    def to_darknet(self, g, src: int):
        a = g.conv(self.conv1, src)
        b = g.conv(self.conv2, g.route([a], groups=2, group_id=1))
        e = g.conv(self.conv4, g.route([g.conv(self.conv3, b), b]))
        return g.maxpool(g.route([a, e]), 2, 2), e


@register
class YOLOv4TinyBackbone(nn.Layer):
    """See the module docstring. ``block_channels`` are the three blocks' c."""

    def __init__(self, stem_channels: Sequence[int] = (32, 64),
                 block_channels: Sequence[int] = (64, 128, 256), out_conv_channels: int = 512,
                 act: str = "leaky", norm_type: str = "bn"):
        super().__init__()
        self.stem1 = dark_conv(3, stem_channels[0], 3, 2, act, norm_type)
        self.stem2 = dark_conv(stem_channels[0], stem_channels[1], 3, 2, act, norm_type)
        self.blocks = nn.LayerList()
        ch = stem_channels[1]
        for c in block_channels:
            self.blocks.append(TinyCSPBlock(ch, c, act, norm_type))
            ch = 2 * c
        self.out_conv = dark_conv(ch, out_conv_channels, 3, act=act, norm_type=norm_type)
        self.out_channels: List[int] = [block_channels[-1], out_conv_channels]

    def forward(self, inputs: Dict[str, paddle.Tensor]) -> List[paddle.Tensor]:
        x = self.stem2(self.stem1(inputs["image"]))
        for block in self.blocks:
            x, e = block(x)
        return [e, self.out_conv(x)]

    def to_darknet(self, g, src: int = -1) -> List[int]:
        x = g.conv(self.stem2, g.conv(self.stem1, src))
        for block in self.blocks:
            x, e = block.to_darknet(g, x)
        return [e, g.conv(self.out_conv, x)]

"""YOLOv4PAN: SPP + PANet (yolov4.cfg, ``csp: false``) and the CSP-PAN of Scaled-YOLOv4
(yolov4-csp, x-mish, P5/P6/P7, ``csp: true``).

Input: backbone maps C_0..C_L (shallowest first). ``channels`` c_0..c_L (shallowest first) are
the widths of the PAN levels. Output: the bottom-up maps N_L..N_0, deepest first, with
``out_channels`` c_L..c_0.

    P_L = SPP(C_L)                       (width c_L)
    P_l = block(concat(conv1x1(C_l), up2(conv1x1(P_{l+1}))))        l = L-1..0   (top-down)
    N_0 = P_0;  N_l = block(concat(conv3x3/s2(N_{l-1}), P_l))        l = 1..L    (bottom-up)

Blocks of width c (``depth`` pairs):
- plain (``csp: false``): 1x1 c, then ``depth`` x (3x3 2c, 1x1 c)
- CSP: x = 1x1 c; concat(main, partial 1x1 c(x)) → 1x1 c with main = ``depth`` x (1x1 c, 3x3 c)
SPP (pools 5/9/13 concatenated as darknet does: [p13, p9, p5, x]):
- plain: 1x1 c, 3x3 2c, 1x1 c, pools, 1x1 c, 3x3 2c, 1x1 c
- CSP: main = 1x1 c, 3x3 c, 1x1 c, pools, ``spp_depth`` x (1x1 c, 3x3 c); concat(main,
  partial 1x1 c(C_L)) → 1x1 c

``to_darknet(g, feats, emit_head)``: darknet layer order. With ``heads_inline`` (yolov4,
yolov4-csp, x-mish) each output's head is emitted as soon as the output exists (shallowest
first); otherwise (P5/P6/P7) all heads come after the PAN. This only changes darknet files.
"""
from typing import Callable, List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.registry import register
from ..backbones.cspdarknet import dark_conv

__all__ = ["YOLOv4PAN", "PANBlock", "SPPBlock"]

_POOLS = (13, 9, 5)  # darknet's concat order of the SPP branches


class PANBlock(nn.Layer):
    """Plain or CSP block (module docstring); [N, ch_in, H, W] → [N, ch, H, W]."""

    def __init__(self, ch_in: int, ch: int, depth: int, csp: bool, act: str, norm_type: str):
        super().__init__()
        self.csp = csp
        self.conv_in = dark_conv(ch_in, ch, 1, act=act, norm_type=norm_type)
        convs = []
        for _ in range(depth):
            if csp:
                convs += [dark_conv(ch, ch, 1, act=act, norm_type=norm_type),
                          dark_conv(ch, ch, 3, act=act, norm_type=norm_type)]
            else:
                convs += [dark_conv(ch, 2 * ch, 3, act=act, norm_type=norm_type),
                          dark_conv(2 * ch, ch, 1, act=act, norm_type=norm_type)]
        self.convs = nn.Sequential(*convs)
        if csp:
            self.partial = dark_conv(ch, ch, 1, act=act, norm_type=norm_type)
            self.fuse = dark_conv(2 * ch, ch, 1, act=act, norm_type=norm_type)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv_in(x)
        if not self.csp:
            return self.convs(x)
        return self.fuse(paddle.concat([self.convs(x), self.partial(x)], axis=1))

    def to_darknet(self, g, src: int) -> int:
        x = g.conv(self.conv_in, src)
        if self.csp:
            partial = g.conv(self.partial, x)
        y = x
        for conv in self.convs:
            y = g.conv(conv, y)
        return g.conv(self.fuse, g.route([y, partial])) if self.csp else y


class SPPBlock(nn.Layer):
    """Plain or CSP SPP (module docstring); [N, ch_in, H, W] → [N, ch, H, W]."""

    def __init__(self, ch_in: int, ch: int, csp: bool, spp_depth: int, act: str, norm_type: str):
        super().__init__()
        self.csp = csp
        wide = ch if csp else 2 * ch
        self.pre = nn.Sequential(dark_conv(ch_in, ch, 1, act=act, norm_type=norm_type),
                                 dark_conv(ch, wide, 3, act=act, norm_type=norm_type),
                                 dark_conv(wide, ch, 1, act=act, norm_type=norm_type))
        post = [dark_conv(4 * ch, ch, 1, act=act, norm_type=norm_type)]
        post.append(dark_conv(ch, wide, 3, act=act, norm_type=norm_type))
        for _ in range(spp_depth - 1):
            post += [dark_conv(wide, ch, 1, act=act, norm_type=norm_type),
                     dark_conv(ch, wide, 3, act=act, norm_type=norm_type)]
        if not csp:
            post.append(dark_conv(wide, ch, 1, act=act, norm_type=norm_type))
        self.post = nn.Sequential(*post)
        if csp:
            self.partial = dark_conv(ch_in, ch, 1, act=act, norm_type=norm_type)
            self.fuse = dark_conv(2 * ch, ch, 1, act=act, norm_type=norm_type)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        y = self.pre(x)
        y = paddle.concat([F.max_pool2d(y, k, 1, k // 2) for k in _POOLS] + [y], axis=1)
        y = self.post(y)
        if not self.csp:
            return y
        return self.fuse(paddle.concat([y, self.partial(x)], axis=1))

    def to_darknet(self, g, src: int) -> int:
        partial = g.conv(self.partial, src) if self.csp else None
        y = src
        for conv in self.pre:
            y = g.conv(conv, y)
        pools = [g.maxpool(y, k, 1) for k in reversed(_POOLS)]  # darknet: 5, 9, 13 in order
        y = g.route(pools[::-1] + [y])
        for conv in self.post:
            y = g.conv(conv, y)
        return g.conv(self.fuse, g.route([y, partial])) if self.csp else y


@register
class YOLOv4PAN(nn.Layer):
    """See the module docstring. Defaults are yolov4.cfg's SPP + PANet."""

    def __init__(self, in_channels: Sequence[int] = (256, 512, 1024),
                 channels: Sequence[int] = (128, 256, 512), csp: bool = False, depth: int = 2,
                 spp_depth: int = 1, act: str = "leaky", heads_inline: bool = True,
                 norm_type: str = "bn"):
        super().__init__()
        if len(in_channels) != len(channels):
            raise ValueError(f"YOLOv4PAN: {len(in_channels)} input maps but {len(channels)} "
                             "channels; give one width per level")
        self.heads_inline = heads_inline
        n = len(channels)
        self.spp = SPPBlock(in_channels[-1], channels[-1], csp, spp_depth, act, norm_type)
        self.reduce = nn.LayerList()    # 1x1 on P_{l+1} before the upsample, for l = n-2..0
        self.lateral = nn.LayerList()   # 1x1 on C_l
        self.td_blocks = nn.LayerList()
        for l in range(n - 2, -1, -1):
            c = channels[l]
            self.reduce.append(dark_conv(channels[l + 1], c, 1, act=act, norm_type=norm_type))
            self.lateral.append(dark_conv(in_channels[l], c, 1, act=act, norm_type=norm_type))
            self.td_blocks.append(PANBlock(2 * c, c, depth, csp, act, norm_type))
        self.down = nn.LayerList()      # 3x3/s2 on N_{l-1}, for l = 1..n-1
        self.bu_blocks = nn.LayerList()
        for l in range(1, n):
            c = channels[l]
            self.down.append(dark_conv(channels[l - 1], c, 3, 2, act, norm_type))
            self.bu_blocks.append(PANBlock(2 * c, c, depth, csp, act, norm_type))
        self.out_channels: List[int] = list(channels)[::-1]

    def forward(self, feats: List[paddle.Tensor]) -> List[paddle.Tensor]:
        n = len(feats)
        p = [None] * n
        p[-1] = self.spp(feats[-1])
        for j, l in enumerate(range(n - 2, -1, -1)):
            up = F.interpolate(self.reduce[j](p[l + 1]), scale_factor=2., mode="nearest")
            p[l] = self.td_blocks[j](paddle.concat([self.lateral[j](feats[l]), up], axis=1))
        outs = [p[0]]
        for j in range(n - 1):
            outs.append(self.bu_blocks[j](paddle.concat([self.down[j](outs[-1]), p[j + 1]],
                                                         axis=1)))
        return outs[::-1]

    def to_darknet(self, g, feats: List[int],
                   emit_head: Optional[Callable[[int, int], None]] = None) -> List[int]:
        """Darknet layers of the neck; ``emit_head(i, layer)`` emits head i (deepest = 0)."""
        n = len(feats)
        p = [None] * n
        p[-1] = self.spp.to_darknet(g, feats[-1])
        for j, l in enumerate(range(n - 2, -1, -1)):
            up = g.upsample(g.conv(self.reduce[j], p[l + 1]), 2)
            lat = g.conv(self.lateral[j], feats[l])
            p[l] = self.td_blocks[j].to_darknet(g, g.route([lat, up]))
        outs = [p[0]]
        for j in range(n):
            if self.heads_inline and emit_head is not None:
                emit_head(n - 1 - j, outs[j])
            if j == n - 1:
                break
            down = g.conv(self.down[j], outs[j])
            outs.append(self.bu_blocks[j].to_darknet(g, g.route([down, p[j + 1]])))
        return outs[::-1]

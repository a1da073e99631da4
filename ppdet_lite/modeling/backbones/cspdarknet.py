"""CSPDarkNet: the YOLOv4 (CSPDarknet53) and Scaled-YOLOv4 (CSP, x-mish, P5/P6/P7) backbones.

Input ``inputs['image']`` [N, 3, H, W]. A 3x3 stem conv, then one stage per entry of
``stage_channels``; stage i halves the resolution (stride 2^(i+1)). Output: the maps of the
stages in ``return_idx`` (shallowest first), ``out_channels`` = their ``stage_channels``.

Compound scaling lives in the config: ``stage_channels`` (width), ``depths`` (residual blocks per
stage) and their length (P6/P7 add stages). Stage kinds, in darknet's layer order:

- ``csp``: conv3x3/s2 → [partial 1x1 (c/2)] ‖ [main 1x1 (c/2) → blocks → 1x1 (c/2)] → concat
  (main, partial) → 1x1 (c). Blocks: 1x1 (c/2) → 3x3 (c/2) → + input.
- ``csp_wide`` (first stage of yolov4.cfg): as ``csp`` with the partial/main width c and the
  blocks' 1x1 at c/2.
- ``res`` (first stage of yolov4-csp / x-mish / P7): conv3x3/s2 → blocks 1x1 (c/2) → 3x3 (c) → +.

``to_darknet(g)`` describes the backbone as darknet layers (see ``ppdet_lite.darknet.graph``).
"""
from typing import Dict, List, Sequence

import paddle
import paddle.nn as nn

from ...core.registry import register
from ..layers import ConvBNLayer

__all__ = ["CSPDarkNet", "dark_conv", "DarkBottleneck", "CSPStage"]


def dark_conv(ch_in: int, ch_out: int, k: int = 1, stride: int = 1, act: str = "mish",
              norm_type: str = "bn") -> ConvBNLayer:
    """Darknet's [convolutional] with batch_normalize=1 and pad=1: conv (no bias) → BN → act."""
    return ConvBNLayer(ch_in, ch_out, k, stride=stride, padding=k // 2, act=act,
                       norm_type=norm_type)


class DarkBottleneck(nn.Layer):
    """x + conv3x3(conv1x1(x)); [N, ch, H, W] → same shape (darknet's [shortcut] from=-3)."""

    def __init__(self, ch: int, mid: int, act: str = "mish", norm_type: str = "bn"):
        super().__init__()
        self.conv1 = dark_conv(ch, mid, 1, act=act, norm_type=norm_type)
        self.conv2 = dark_conv(mid, ch, 3, act=act, norm_type=norm_type)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x + self.conv2(self.conv1(x))

    def to_darknet(self, g, src: int) -> int:
        out = g.conv(self.conv2, g.conv(self.conv1, src))
        return g.shortcut(out, src)


class CSPStage(nn.Layer):
    """One backbone stage (kinds ``csp``, ``csp_wide``, ``res``; see the module docstring).
    [N, ch_in, H, W] → [N, ch_out, H/2, W/2]."""

    def __init__(self, ch_in: int, ch_out: int, depth: int, kind: str = "csp",
                 act: str = "mish", norm_type: str = "bn"):
        super().__init__()
        if kind not in ("csp", "csp_wide", "res"):
            raise ValueError(f"CSPStage kind must be 'csp', 'csp_wide' or 'res', got {kind!r}")
        self.kind = kind
        self.downsample = dark_conv(ch_in, ch_out, 3, 2, act, norm_type)
        if kind == "res":
            self.blocks = nn.Sequential(*[DarkBottleneck(ch_out, ch_out // 2, act, norm_type)
                                          for _ in range(depth)])
            return
        hidden = ch_out if kind == "csp_wide" else ch_out // 2
        mid = ch_out // 2
        self.partial = dark_conv(ch_out, hidden, 1, act=act, norm_type=norm_type)
        self.main = dark_conv(ch_out, hidden, 1, act=act, norm_type=norm_type)
        self.blocks = nn.Sequential(*[DarkBottleneck(hidden, mid if kind == "csp_wide" else hidden,
                                                     act, norm_type) for _ in range(depth)])
        self.transition = dark_conv(hidden, hidden, 1, act=act, norm_type=norm_type)
        self.fuse = dark_conv(2 * hidden, ch_out, 1, act=act, norm_type=norm_type)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.downsample(x)
        if self.kind == "res":
            return self.blocks(x)
        main = self.transition(self.blocks(self.main(x)))
        return self.fuse(paddle.concat([main, self.partial(x)], axis=1))

    def to_darknet(self, g, src: int) -> int:
        x = g.conv(self.downsample, src)
        if self.kind == "res":
            for block in self.blocks:
                x = block.to_darknet(g, x)
            return x
        partial = g.conv(self.partial, x)
        y = g.conv(self.main, x)
        for block in self.blocks:
            y = block.to_darknet(g, y)
        y = g.conv(self.transition, y)
        return g.conv(self.fuse, g.route([y, partial]))


@register
class CSPDarkNet(nn.Layer):
    """See the module docstring. Defaults are yolov4.cfg's CSPDarknet53."""

    def __init__(self, stem_channels: int = 32,
                 stage_channels: Sequence[int] = (64, 128, 256, 512, 1024),
                 depths: Sequence[int] = (1, 2, 8, 8, 4), first_stage: str = "csp_wide",
                 act: str = "mish", return_idx: Sequence[int] = (2, 3, 4),
                 norm_type: str = "bn"):
        super().__init__()
        if len(stage_channels) != len(depths):
            raise ValueError(f"CSPDarkNet: {len(stage_channels)} stage_channels but "
                             f"{len(depths)} depths; give one depth per stage")
        if any(not 0 <= i < len(depths) for i in return_idx):
            raise ValueError(f"CSPDarkNet.return_idx {list(return_idx)} must index the "
                             f"{len(depths)} stages")
        self.stem = dark_conv(3, stem_channels, 3, act=act, norm_type=norm_type)
        self.stages = nn.LayerList()
        ch = stem_channels
        for i, (c, d) in enumerate(zip(stage_channels, depths)):
            self.stages.append(CSPStage(ch, c, d, first_stage if i == 0 else "csp", act,
                                        norm_type))
            ch = c
        self.return_idx = list(return_idx)
        self.out_channels: List[int] = [stage_channels[i] for i in self.return_idx]

    def forward(self, inputs: Dict[str, paddle.Tensor]) -> List[paddle.Tensor]:
        x = self.stem(inputs["image"])
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
        return outs

    def to_darknet(self, g, src: int = -1) -> List[int]:
        x = g.conv(self.stem, src)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage.to_darknet(g, x)
            if i in self.return_idx:
                outs.append(x)
        return outs

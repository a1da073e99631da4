"""PPYOLOFPN: PP-YOLO's top-down neck (R50vd-DCN, R18vd, MobileNetV3 configs).

Level i (0 = deepest) has width ``channel = 64·2^L / 2^i`` (L = number of levels) and outputs a
"tip" map of ``2·channel`` channels; its "route" (``channel`` channels) goes through a 1×1 transition
(``256 / 2^i`` channels), ×2 nearest upsampling, and is concatenated in front of the next input.

Block layouts (``conv_block_num``; CoordConv replaces the 1×1 convs, route and tip when ``coord_conv``):
  2, top level:   conv0 1×1, conv1 3×3, conv2 1×1, [spp], conv3 3×3, [dropblock], route 1×1, tip 3×3
  2, lower:       conv0 1×1, conv1 3×3, [dropblock], conv2 1×1, conv3 3×3, route 1×1, tip 3×3
  0, any level:   [spp (top only)], [dropblock], route 1×1, tip 3×3

Sublayer names (``yolo_block.i.conv_module.convN``, ``.tip``, ``yolo_transition.i``) equal
PaddleDetection's, so its checkpoints load unchanged.
"""
from typing import Dict, List, Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.errors import ConfigError
from ...core.registry import register
from ..layers import SPP, ConvBNLayer, CoordConv, DropBlock

__all__ = ['PPYOLOFPN', 'PPYOLODetBlock']


class PPYOLODetBlock(nn.Layer):
    """Runs ``layers[:-1]`` in order (``conv_module``) → route; the last layer (``tip``) → tip.

    ``layers``: (name, layer) pairs; returns ``(route, tip)``.
    """

    def __init__(self, layers: Sequence[Tuple[str, nn.Layer]]):
        super().__init__()
        self.conv_module = nn.Sequential(*layers[:-1])
        self.tip = layers[-1][1]

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        route = self.conv_module(x)
        return route, self.tip(route)


@register
class PPYOLOFPN(nn.Layer):
    """``forward(blocks)``: backbone maps shallow → deep (``in_channels`` in that order) →
    one map per level, deepest first, channels ``out_channels`` (e.g. [1024, 512, 256] for R50).
    With ``for_mot`` a dict ``{'yolo_feats', 'emb_feats'}`` (emb_feats are the routes).
    """

    def __init__(self, in_channels: Sequence[int] = (512, 1024, 2048), norm_type: str = 'bn',
                 freeze_norm: bool = False, data_format: str = 'NCHW', coord_conv: bool = False,
                 conv_block_num: int = 2, drop_block: bool = False, block_size: int = 3,
                 keep_prob: float = 0.9, spp: bool = False):
        super().__init__()
        if not in_channels:
            raise ConfigError("PPYOLOFPN: in_channels is empty; give one channel count per backbone map")
        if conv_block_num not in (0, 2):
            raise ConfigError(f"PPYOLOFPN: conv_block_num must be 0 or 2 (as in PaddleDetection), "
                              f"got {conv_block_num}")
        self.in_channels = list(in_channels)
        self.num_blocks = len(in_channels)
        self.data_format = data_format
        self.coord_conv, self.conv_block_num, self.spp = coord_conv, conv_block_num, spp
        self.drop_block, self.block_size, self.keep_prob = drop_block, block_size, keep_prob
        common = dict(norm_type=norm_type, freeze_norm=freeze_norm, data_format=data_format)

        self.out_channels: List[int] = []
        self.yolo_blocks, self.routes = [], []
        for i, ch_in in enumerate(self.in_channels[::-1]):
            if i > 0:
                ch_in += 512 // 2 ** i
            channel = 64 * 2 ** self.num_blocks // 2 ** i
            block = self.add_sublayer(f'yolo_block.{i}', PPYOLODetBlock(
                self._block_layers(i, ch_in, channel, common)))
            self.yolo_blocks.append(block)
            self.out_channels.append(channel * 2)
            if i < self.num_blocks - 1:
                self.routes.append(self.add_sublayer(f'yolo_transition.{i}', ConvBNLayer(
                    channel, 256 // 2 ** i, filter_size=1, padding=0, **common)))

    def _block_layers(self, i: int, ch_in: int, channel: int, common: dict) -> List[Tuple[str, nn.Layer]]:
        """The (name, layer) list of level ``i``, in forward order (see the module docstring)."""
        conv = CoordConv if self.coord_conv else ConvBNLayer
        convs, c_in = [], ch_in
        for j in range(self.conv_block_num):
            convs.append((f'conv{2 * j}', conv(c_in, channel, filter_size=1, padding=0, **common)))
            convs.append((f'conv{2 * j + 1}', ConvBNLayer(channel, channel * 2, filter_size=3,
                                                          padding=1, **common)))
            c_in = channel * 2
        head = [('route', conv(c_in, channel, filter_size=1, padding=0, **common)),
                ('tip', conv(channel, channel * 2, filter_size=3, padding=1, **common))]
        drop = [('dropblock', DropBlock(self.block_size, self.keep_prob,
                                        data_format=self.data_format))] if self.drop_block else []
        spp_in = channel if self.conv_block_num == 2 else c_in
        spp = [('spp', SPP(spp_in * 4, spp_in, 1, pool_size=[5, 9, 13], **common))] \
            if self.spp and i == 0 else []
        if self.conv_block_num == 0:
            return spp + drop + head
        if i == 0:
            return convs[:3] + spp + convs[3:] + drop + head
        return convs[:2] + drop + convs[2:] + head

    def forward(self, blocks: List[paddle.Tensor],
                for_mot: bool = False) -> Union[List[paddle.Tensor], Dict[str, List[paddle.Tensor]]]:
        if len(blocks) != self.num_blocks:
            raise ValueError(f"PPYOLOFPN expects {self.num_blocks} feature maps, got {len(blocks)}")
        axis = 1 if self.data_format == 'NCHW' else -1
        yolo_feats, emb_feats = [], []
        for i, block in enumerate(blocks[::-1]):
            if i > 0:
                block = paddle.concat([route, block], axis=axis)
            route, tip = self.yolo_blocks[i](block)
            yolo_feats.append(tip)
            emb_feats.append(route)
            if i < self.num_blocks - 1:
                route = F.interpolate(self.routes[i](route), scale_factor=2.,
                                      data_format=self.data_format)
        if for_mot:
            return {'yolo_feats': yolo_feats, 'emb_feats': emb_feats}
        return yolo_feats

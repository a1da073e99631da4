"""PPYOLOPAN: PP-YOLOv2's neck — a top-down FPN path, then a bottom-up PAN path, CSP blocks, Mish.

Both paths use ``PPYOLODetBlockCSP``: left 1×1 and right 1×1 (``channel`` each), the left branch
runs ``conv_block_num`` × (1×1, 3×3) convs, concat, fuse 1×1 → ``2·channel``. FPN level i (0 =
deepest) has ``channel = 512 / 2^i``; the top block swaps its 4th conv for SPP; DropBlock follows the
4th layer. FPN transitions: 1×1 to ``channel`` + ×2 upsample; PAN transitions: 3×3 stride 2.

Sublayer names (``fpn.i``, ``fpn_transition.i``, ``pan_transition.i``, ``pan.i``, inside a block
``conv1`` (left), ``conv2`` (right), ``conv3`` (fuse), ``conv_module.{j}.{0,1}``/``spp``/``dropblock``)
equal PaddleDetection's, so its checkpoints load unchanged.
"""
from typing import Dict, List, Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.errors import ConfigError
from ...core.registry import register
from ..layers import SPP, ConvBNLayer, DropBlock

__all__ = ['PPYOLOPAN', 'PPYOLODetBlockCSP']


class PPYOLODetBlockCSP(nn.Layer):
    """CSP block: ``[N, ch_in, H, W]`` → ``(out, out)`` with ``out`` ``[N, 2·ch_out, H, W]``.

    ``layers``: (name, layer) pairs run on the left branch (``conv_module``).
    """

    def __init__(self, layers: Sequence[Tuple[str, nn.Layer]], ch_in: int, ch_out: int, act: str,
                 norm_type: str, data_format: str = 'NCHW'):
        super().__init__()
        self.data_format = data_format
        common = dict(filter_size=1, padding=0, act=act, norm_type=norm_type, data_format=data_format)
        self.conv1 = ConvBNLayer(ch_in, ch_out, **common)
        self.conv2 = ConvBNLayer(ch_in, ch_out, **common)
        self.conv3 = ConvBNLayer(ch_out * 2, ch_out * 2, **common)
        self.conv_module = nn.Sequential(*layers)

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        left = self.conv_module(self.conv1(x))
        axis = 1 if self.data_format == 'NCHW' else -1
        out = self.conv3(paddle.concat([left, self.conv2(x)], axis=axis))
        return out, out


@register
class PPYOLOPAN(nn.Layer):
    """``forward(blocks)``: backbone maps shallow → deep (``in_channels`` in that order) → one map
    per level, deepest first, channels ``out_channels`` (e.g. [1024, 512, 256] for 3 levels).
    With ``for_mot`` a dict ``{'yolo_feats', 'emb_feats'}`` (emb_feats are the FPN routes).
    """

    def __init__(self, in_channels: Sequence[int] = (512, 1024, 2048), norm_type: str = 'bn',
                 data_format: str = 'NCHW', act: str = 'mish', conv_block_num: int = 3,
                 drop_block: bool = False, block_size: int = 3, keep_prob: float = 0.9,
                 spp: bool = False):
        super().__init__()
        if not in_channels:
            raise ConfigError("PPYOLOPAN: in_channels is empty; give one channel count per backbone map")
        if spp and conv_block_num < 2:
            raise ConfigError(f"PPYOLOPAN: spp replaces the 4th conv and needs conv_block_num >= 2, "
                              f"got {conv_block_num}")
        self.in_channels = list(in_channels)
        self.num_blocks = n = len(in_channels)
        self.data_format = data_format
        self.conv_block_num, self.spp = conv_block_num, spp
        self.drop_block, self.block_size, self.keep_prob = drop_block, block_size, keep_prob
        self.act, self.norm_type = act, norm_type
        common = dict(act=act, norm_type=norm_type, data_format=data_format)

        self.fpn_blocks, self.fpn_routes, fpn_channels = [], [], []
        for i, ch_in in enumerate(self.in_channels[::-1]):
            if i > 0:
                ch_in += 512 // 2 ** (i - 1)
            channel = 512 // 2 ** i
            name = f'fpn.{i}'
            self.fpn_blocks.append(self.add_sublayer(name, PPYOLODetBlockCSP(
                self._csp_layers(channel, with_spp=spp and i == 0), ch_in, channel, act, norm_type,
                data_format)))
            fpn_channels.append(channel * 2)
            if i < n - 1:
                self.fpn_routes.append(self.add_sublayer(f'fpn_transition.{i}', ConvBNLayer(
                    channel * 2, channel, filter_size=1, padding=0, **common)))

        # PAN, built from the second-shallowest level up to the deepest (PaddleDetection's order).
        self.pan_blocks, self.pan_routes = [None] * (n - 1), [None] * (n - 1)
        for i in reversed(range(n - 1)):
            self.pan_routes[i] = self.add_sublayer(f'pan_transition.{i}', ConvBNLayer(
                fpn_channels[i + 1], fpn_channels[i + 1], filter_size=3, stride=2, padding=1,
                **common))
            channel = 512 // 2 ** i
            self.pan_blocks[i] = self.add_sublayer(f'pan.{i}', PPYOLODetBlockCSP(
                self._csp_layers(channel, with_spp=False), fpn_channels[i] + fpn_channels[i + 1],
                channel, act, norm_type, data_format))
        self.out_channels: List[int] = [512 // 2 ** i * 2 for i in range(n - 1)] + [fpn_channels[-1]]

    def _csp_layers(self, channel: int, with_spp: bool) -> List[Tuple[str, nn.Layer]]:
        """Left-branch stack: ``{j}.0`` 1×1, ``{j}.1`` 3×3 per j; SPP replaces ``1.1``, DropBlock follows."""
        common = dict(act=self.act, norm_type=self.norm_type, data_format=self.data_format)
        layers = []
        for j in range(self.conv_block_num):
            layers.append((f'{j}.0', ConvBNLayer(channel, channel, 1, padding=0, **common)))
            layers.append((f'{j}.1', ConvBNLayer(channel, channel, 3, padding=1, **common)))
        if with_spp:
            layers[3] = ('spp', SPP(channel * 4, channel, 1, pool_size=[5, 9, 13], **common))
        if self.drop_block:
            layers.insert(4, ('dropblock', DropBlock(self.block_size, self.keep_prob,
                                                     data_format=self.data_format)))
        return layers

    def forward(self, blocks: List[paddle.Tensor],
                for_mot: bool = False) -> Union[List[paddle.Tensor], Dict[str, List[paddle.Tensor]]]:
        if len(blocks) != self.num_blocks:
            raise ValueError(f"PPYOLOPAN expects {self.num_blocks} feature maps, got {len(blocks)}")
        axis = 1 if self.data_format == 'NCHW' else -1
        fpn_feats, emb_feats = [], []
        for i, block in enumerate(blocks[::-1]):
            if i > 0:
                block = paddle.concat([route, block], axis=axis)
            route, tip = self.fpn_blocks[i](block)
            fpn_feats.append(tip)
            emb_feats.append(route)
            if i < self.num_blocks - 1:
                route = F.interpolate(self.fpn_routes[i](route), scale_factor=2.,
                                      data_format=self.data_format)

        pan_feats = [fpn_feats[-1]]  # shallowest level, deepest-first order is restored below
        route = fpn_feats[-1]
        for i in reversed(range(self.num_blocks - 1)):
            block = paddle.concat([self.pan_routes[i](route), fpn_feats[i]], axis=axis)
            route, tip = self.pan_blocks[i](block)
            pan_feats.append(tip)
        if for_mot:
            return {'yolo_feats': pan_feats[::-1], 'emb_feats': emb_feats}
        return pan_feats[::-1]

"""PPYOLOTinyFPN: the PP-YOLO Tiny neck (depthwise 5x5 detection blocks, SPP on the deepest map).

Sublayer names (``spp``, ``yolo_block.i``, ``yolo_transition.i``) equal PaddleDetection's.
"""
from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.registry import register
from ..layers import SPP, ConvBNLayer, DropBlock

__all__ = ["PPYOLOTinyFPN", "PPYOLOTinyDetBlock"]


class PPYOLOTinyDetBlock(nn.Layer):
    """(DropBlock) → 1x1 → dw5x5 → 1x1 → dw5x5 = route → 1x1 = tip; returns (route, tip), ch_out each."""

    def __init__(self, ch_in: int, ch_out: int, name: str, drop_block: bool = False,
                 block_size: int = 3, keep_prob: float = 0.9, data_format: str = "NCHW"):
        super().__init__()
        self.drop_block_ = drop_block
        self.conv_module = nn.Sequential()
        # suffix, in, kernel, groups (stride 1, "same" padding)
        for suffix, c_in, k, groups in [(".0", ch_in, 1, 1), (".1", ch_out, 5, ch_out),
                                        (".2", ch_out, 1, 1), (".route", ch_out, 5, ch_out)]:
            self.conv_module.add_sublayer(name + suffix, ConvBNLayer(
                c_in, ch_out, k, padding=k // 2, groups=groups, data_format=data_format))
        self.tip = ConvBNLayer(ch_out, ch_out, 1, data_format=data_format)
        if drop_block:
            self.drop_block = DropBlock(block_size, keep_prob, name=name + ".dropblock",
                                        data_format=data_format)

    def forward(self, x):
        if self.drop_block_:
            x = self.drop_block(x)
        route = self.conv_module(x)
        return route, self.tip(route)


@register
class PPYOLOTinyFPN(nn.Layer):
    """Top-down FPN over backbone maps given shallow → deep (``in_channels`` in that order).

    ``forward(blocks)`` returns one map per level, deepest first, channels
    ``out_channels == detection_block_channels``; with ``for_mot`` a dict
    ``{'yolo_feats', 'emb_feats'}`` (emb_feats are the routes).
    """

    def __init__(self, in_channels: Sequence[int] = (80, 56, 34),
                 detection_block_channels: Sequence[int] = (160, 128, 96),
                 norm_type: str = "bn", data_format: str = "NCHW", spp: bool = False,
                 drop_block: bool = False, block_size: int = 3, keep_prob: float = 0.9):
        super().__init__()
        if not in_channels or len(in_channels) != len(detection_block_channels):
            raise ValueError(f"PPYOLOTinyFPN: in_channels {list(in_channels)} and "
                             f"detection_block_channels {list(detection_block_channels)} must be "
                             "non-empty and of equal length (one per backbone feature map)")
        self.in_channels = list(in_channels)[::-1]  # deepest first
        self.detection_block_channels = list(detection_block_channels)
        self.data_format = data_format
        self.num_blocks = len(in_channels)
        self.drop_block, self.block_size, self.keep_prob = drop_block, block_size, keep_prob
        self.spp_ = spp
        if spp:
            c = self.in_channels[0]
            self.spp = SPP(c * 4, c, k=1, pool_size=[5, 9, 13], norm_type=norm_type,
                           data_format=data_format)
        self.yolo_blocks, self.routes = [], []
        prev = 0
        for i, (ch_in, ch_out) in enumerate(zip(self.in_channels, self.detection_block_channels)):
            name = f"yolo_block.{i}"
            self.yolo_blocks.append(self.add_sublayer(name, PPYOLOTinyDetBlock(
                ch_in + prev, ch_out, name, drop_block, block_size, keep_prob, data_format)))
            if i < self.num_blocks - 1:
                self.routes.append(self.add_sublayer(f"yolo_transition.{i}", ConvBNLayer(
                    ch_out, ch_out, 1, norm_type=norm_type, data_format=data_format)))
            prev = ch_out
        self.out_channels: List[int] = list(self.detection_block_channels)

    def forward(self, blocks: List[paddle.Tensor], for_mot: bool = False):
        if len(blocks) != self.num_blocks:
            raise ValueError(f"PPYOLOTinyFPN expects {self.num_blocks} feature maps, got {len(blocks)}")
        axis = 1 if self.data_format == "NCHW" else -1
        yolo_feats, emb_feats = [], []
        route = None
        for i, block in enumerate(blocks[::-1]):
            if i == 0 and self.spp_:
                block = self.spp(block)
            if i > 0:
                block = paddle.concat([route, block], axis=axis)
            route, tip = self.yolo_blocks[i](block)
            yolo_feats.append(tip)
            emb_feats.append(route)
            if i < self.num_blocks - 1:
                route = F.interpolate(self.routes[i](route), scale_factor=2.,
                                      data_format=self.data_format)
        if for_mot:
            return {"yolo_feats": yolo_feats, "emb_feats": emb_feats}
        return yolo_feats

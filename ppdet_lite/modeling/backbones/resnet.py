"""ResNet / ResNeXt backbone, variants a-d, optional DCNv2 stages and SE (PP-YOLO's R18vd, R50vd-DCN).

Input ``inputs['image']`` ``[N, 3, H, W]``; output one feature map per ``return_idx`` stage:
stage i (0..3) has stride ``4·2^i`` and ``out_channels[i]`` channels (64·2^i, ×4 for depth ≥ 50).

State-dict keys equal PaddleDetection's (``conv1.conv1_1.conv.weight``, ``res2.res2a.branch2a.norm.weight``,
``res5.res5a.short.conv...``, ``res4.res4b12...`` for depth ≥ 101), so its checkpoints load unchanged.
"""
import math
from numbers import Integral
from typing import Dict, List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Uniform
from paddle.regularizer import L2Decay

from ...core.errors import ConfigError
from ...core.registry import register
from ..dcn import DeformConv2D, offset_conv, split_offset_mask

__all__ = ['ResNet', 'ConvNormLayer', 'BasicBlock', 'BottleNeck', 'Blocks']

BLOCKS_PER_STAGE = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3],
                    101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class ConvNormLayer(nn.Layer):
    """Conv (or DCNv2) → BatchNorm → optional activation; "same" padding, no conv bias.

    ``freeze_norm``: BN scale/shift get lr 0 and no gradient, and BN always uses running statistics.
    """

    def __init__(self, ch_in: int, ch_out: int, filter_size: int, stride: int, groups: int = 1,
                 act: str = None, norm_type: str = 'bn', norm_decay: float = 0.,
                 freeze_norm: bool = True, lr: float = 1.0, dcn_v2: bool = False):
        super().__init__()
        if norm_type not in ('bn', 'sync_bn'):
            raise ConfigError(f"ResNet: norm_type {norm_type!r} is not supported; use 'bn' or 'sync_bn'")
        self.act = act
        self.dcn_v2 = dcn_v2
        self.filter_size = filter_size
        conv_args = dict(in_channels=ch_in, out_channels=ch_out, kernel_size=filter_size,
                         stride=stride, padding=(filter_size - 1) // 2, groups=groups,
                         weight_attr=ParamAttr(learning_rate=lr), bias_attr=False)
        if dcn_v2:
            self.conv_offset = offset_conv(ch_in, filter_size, stride)
            self.conv = DeformConv2D(dilation=1, **conv_args)
        else:
            self.conv = nn.Conv2D(**conv_args)

        norm_lr = 0. if freeze_norm else lr
        attrs = [ParamAttr(learning_rate=norm_lr, regularizer=L2Decay(norm_decay),
                           trainable=not freeze_norm) for _ in range(2)]
        # sync_bn becomes SyncBatchNorm only in multi-GPU training (the trainer converts it).
        self.norm = nn.BatchNorm2D(ch_out, weight_attr=attrs[0], bias_attr=attrs[1],
                                   use_global_stats=True if freeze_norm else None)
        if freeze_norm:
            for p in self.norm.parameters():
                p.stop_gradient = True

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.dcn_v2:
            offset, mask = split_offset_mask(self.conv_offset(x), self.filter_size)
            out = self.conv(x, offset, mask=mask)
        else:
            out = self.conv(x)
        out = self.norm(out)
        return getattr(F, self.act)(out) if self.act else out


class SELayer(nn.Layer):
    """Squeeze-and-excitation: global pool → FC(ch/16) → relu → FC(ch) → sigmoid, scales channels."""

    def __init__(self, ch: int, reduction_ratio: int = 16):
        super().__init__()
        mid = ch // reduction_ratio
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.squeeze = nn.Linear(ch, mid, weight_attr=ParamAttr(
            initializer=Uniform(-1 / math.sqrt(ch), 1 / math.sqrt(ch))))
        self.extract = nn.Linear(mid, ch, weight_attr=ParamAttr(
            initializer=Uniform(-1 / math.sqrt(mid), 1 / math.sqrt(mid))))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        w = self.pool(x).flatten(1)
        w = F.sigmoid(self.extract(F.relu(self.squeeze(w))))
        return x * w.unsqueeze([2, 3])


def _shortcut(ch_in: int, ch_out: int, stride: int, variant: str, **norm_args) -> nn.Layer:
    """1×1 projection; variant d downsamples with a 2×2 avg-pool first instead of a strided conv."""
    if variant == 'd' and stride == 2:
        short = nn.Sequential()
        short.add_sublayer('pool', nn.AvgPool2D(kernel_size=2, stride=2, padding=0, ceil_mode=True))
        short.add_sublayer('conv', ConvNormLayer(ch_in, ch_out, 1, 1, **norm_args))
        return short
    return ConvNormLayer(ch_in, ch_out, 1, stride, **norm_args)


class _Residual(nn.Layer):
    """Shared forward: branch convs (+ SE) + shortcut, then relu."""
    branch_names: Sequence[str] = ()

    def _add_shortcut(self, ch_in, ch_out, stride, shortcut, variant, norm_args):
        self.shortcut = shortcut
        if not shortcut:
            self.short = _shortcut(ch_in, ch_out, stride, variant, **norm_args)

    def _add_se(self, ch, std_senet):
        self.std_senet = std_senet
        if std_senet:
            self.se = SELayer(ch)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = x
        for name in self.branch_names:
            out = getattr(self, name)(out)
        if self.std_senet:
            out = self.se(out)
        return F.relu(out + (x if self.shortcut else self.short(x)))


class BasicBlock(_Residual):
    """Two 3×3 convs (ResNet-18/34); DCN goes on the second."""
    expansion = 1
    branch_names = ('branch2a', 'branch2b')

    def __init__(self, ch_in: int, ch_out: int, stride: int, shortcut: bool, variant: str = 'b',
                 groups: int = 1, base_width: int = 64, lr: float = 1.0, norm_type: str = 'bn',
                 norm_decay: float = 0., freeze_norm: bool = True, dcn_v2: bool = False,
                 std_senet: bool = False):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ConfigError(f"ResNet: depth < 50 (BasicBlock) needs groups=1 and base_width=64, "
                              f"got groups={groups}, base_width={base_width}")
        norm_args = dict(norm_type=norm_type, norm_decay=norm_decay, freeze_norm=freeze_norm, lr=lr)
        self._add_shortcut(ch_in, ch_out, stride, shortcut, variant, norm_args)
        self.branch2a = ConvNormLayer(ch_in, ch_out, 3, stride, act='relu', **norm_args)
        self.branch2b = ConvNormLayer(ch_out, ch_out, 3, 1, dcn_v2=dcn_v2, **norm_args)
        self._add_se(ch_out, std_senet)


class BottleNeck(_Residual):
    """1×1 → 3×3 (grouped, optional DCN) → 1×1 (×4 channels); variant a strides the 1×1, others the 3×3."""
    expansion = 4
    branch_names = ('branch2a', 'branch2b', 'branch2c')

    def __init__(self, ch_in: int, ch_out: int, stride: int, shortcut: bool, variant: str = 'b',
                 groups: int = 1, base_width: int = 4, lr: float = 1.0, norm_type: str = 'bn',
                 norm_decay: float = 0., freeze_norm: bool = True, dcn_v2: bool = False,
                 std_senet: bool = False):
        super().__init__()
        stride_a, stride_b = (stride, 1) if variant == 'a' else (1, stride)
        width = int(ch_out * (base_width / 64.)) * groups  # ResNeXt width
        norm_args = dict(norm_type=norm_type, norm_decay=norm_decay, freeze_norm=freeze_norm, lr=lr)
        self._add_shortcut(ch_in, ch_out * 4, stride, shortcut, variant, norm_args)
        self.branch2a = ConvNormLayer(ch_in, width, 1, stride_a, act='relu', **norm_args)
        self.branch2b = ConvNormLayer(width, width, 3, stride_b, groups=groups, act='relu',
                                      dcn_v2=dcn_v2, **norm_args)
        self.branch2c = ConvNormLayer(width, ch_out * 4, 1, 1, **norm_args)
        self._add_se(ch_out * 4, std_senet)


def block_name(stage_num: int, count: int, i: int) -> str:
    """PaddleDetection's block names: res2a, res2b, ...; res4a, res4b1, res4b2, ... when count > 10."""
    if count > 10 and stage_num == 4:
        return 'res4a' if i == 0 else f'res4b{i}'
    return f'res{stage_num}{chr(ord("a") + i)}'


class Blocks(nn.Layer):
    """One stage: ``count`` residual blocks; the first projects (and strides by 2 after res2)."""

    def __init__(self, block: type, ch_in: int, ch_out: int, count: int, stage_num: int, **block_args):
        super().__init__()
        self.blocks = []
        for i in range(count):
            layer = block(ch_in=ch_in, ch_out=ch_out, stride=2 if i == 0 and stage_num != 2 else 1,
                          shortcut=i > 0, **block_args)
            self.blocks.append(self.add_sublayer(block_name(stage_num, count, i), layer))
            ch_in = ch_out * block.expansion

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


@register
class ResNet(nn.Layer):
    """ResNet-{18,34,50,101,152}, variants a/b/c/d (c/d: three 3×3 stem convs; d: avg-pool shortcut).

    ``dcn_v2_stages``/``return_idx`` index stages 0..3 (= res2..res5). ``freeze_at >= 0`` stops
    gradients in the stem and stages 0..freeze_at (only the stem if ``freeze_stem_only``).
    """

    def __init__(self, depth: int = 50, ch_in: int = 64, variant: str = 'b',
                 lr_mult_list: Sequence[float] = (1.0, 1.0, 1.0, 1.0), groups: int = 1,
                 base_width: int = 64, norm_type: str = 'bn', norm_decay: float = 0.,
                 freeze_norm: bool = True, freeze_at: int = 0,
                 return_idx: Sequence[int] = (0, 1, 2, 3), dcn_v2_stages: Sequence[int] = (-1,),
                 num_stages: int = 4, std_senet: bool = False, freeze_stem_only: bool = False):
        super().__init__()
        return_idx = [return_idx] if isinstance(return_idx, Integral) else list(return_idx)
        dcn_v2_stages = [dcn_v2_stages] if isinstance(dcn_v2_stages, Integral) else list(dcn_v2_stages)
        if depth not in BLOCKS_PER_STAGE:
            raise ConfigError(f"ResNet: depth {depth} is not supported; "
                              f"use one of {sorted(BLOCKS_PER_STAGE)}")
        if variant not in ('a', 'b', 'c', 'd'):
            raise ConfigError(f"ResNet: variant {variant!r} is not supported; use 'a', 'b', 'c' or 'd'")
        if not 1 <= num_stages <= 4:
            raise ConfigError(f"ResNet: num_stages must be 1..4, got {num_stages}")
        if max(return_idx) >= num_stages or max(dcn_v2_stages) >= num_stages:
            raise ConfigError(f"ResNet: return_idx {return_idx} and dcn_v2_stages {dcn_v2_stages} "
                              f"must index stages below num_stages={num_stages}")
        if len(lr_mult_list) != 4:
            raise ConfigError(f"ResNet: lr_mult_list needs 4 values (res2..res5), got {list(lr_mult_list)}")
        self.depth, self.variant, self.return_idx = depth, variant, return_idx
        self.freeze_at, self.dcn_v2_stages = freeze_at, dcn_v2_stages
        norm_args = dict(norm_type=norm_type, norm_decay=norm_decay, freeze_norm=freeze_norm)

        if variant in ('c', 'd'):
            stem = [(3, ch_in // 2, 3, 2, 'conv1_1'), (ch_in // 2, ch_in // 2, 3, 1, 'conv1_2'),
                    (ch_in // 2, ch_in, 3, 1, 'conv1_3')]
        else:
            stem = [(3, ch_in, 7, 2, 'conv1' if groups == 1 else 'res_conv1')]
        self.conv1 = nn.Sequential()
        for c_in, c_out, k, s, name in stem:
            self.conv1.add_sublayer(name, ConvNormLayer(c_in, c_out, k, s, act='relu', lr=1.0,
                                                        **norm_args))

        block = BottleNeck if depth >= 50 else BasicBlock
        widths = [64, 128, 256, 512]
        self._out_channels = [w * block.expansion for w in widths]
        self._out_strides = [4, 8, 16, 32]
        self.res_layers = []
        stage_in = ch_in
        for i in range(num_stages):
            stage = Blocks(block, stage_in, widths[i], BLOCKS_PER_STAGE[depth][i], stage_num=i + 2,
                           variant=variant, groups=groups, base_width=base_width,
                           lr=lr_mult_list[i], dcn_v2=i in dcn_v2_stages, std_senet=std_senet,
                           **norm_args)
            self.res_layers.append(self.add_sublayer(f'res{i + 2}', stage))
            stage_in = self._out_channels[i]

        self.out_channels: List[int] = [self._out_channels[i] for i in return_idx]
        self.out_strides: List[int] = [self._out_strides[i] for i in return_idx]
        if freeze_at >= 0:
            frozen = [self.conv1] + ([] if freeze_stem_only else self.res_layers[:freeze_at + 1])
            for layer in frozen:
                for p in layer.parameters():
                    p.stop_gradient = True

    def forward(self, inputs: Dict[str, paddle.Tensor]) -> List[paddle.Tensor]:
        x = F.max_pool2d(self.conv1(inputs['image']), kernel_size=3, stride=2, padding=1)
        outs = []
        for idx, stage in enumerate(self.res_layers):
            x = stage(x)
            if idx in self.return_idx:
                outs.append(x)
        return outs

"""MobileNetV3 backbone (large / small, any width ``scale``) as PaddleDetection builds it.

Sublayer names (``conv1``, ``conv2`` ... ``convN``, ``expand_conv``, ``bottleneck_conv``, ``mid_se``,
``linear_conv``, ``bn``) equal PaddleDetection's, so its checkpoints load unchanged.
"""
from numbers import Integral
from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.regularizer import L2Decay

from ...core.registry import register

__all__ = ["MobileNetV3", "make_divisible"]

# kernel, expansion, out channels, squeeze-excite, activation, stride
_LARGE = [
    [3, 16, 16, False, "relu", 1], [3, 64, 24, False, "relu", 2], [3, 72, 24, False, "relu", 1],
    [5, 72, 40, True, "relu", 2], [5, 120, 40, True, "relu", 1], [5, 120, 40, True, "relu", 1],
    [3, 240, 80, False, "hard_swish", 2], [3, 200, 80, False, "hard_swish", 1],
    [3, 184, 80, False, "hard_swish", 1], [3, 184, 80, False, "hard_swish", 1],
    [3, 480, 112, True, "hard_swish", 1], [3, 672, 112, True, "hard_swish", 1],
    [5, 672, 160, True, "hard_swish", 2], [5, 960, 160, True, "hard_swish", 1],
    [5, 960, 160, True, "hard_swish", 1],
]
_SMALL = [
    [3, 16, 16, True, "relu", 2], [3, 72, 24, False, "relu", 2], [3, 88, 24, False, "relu", 1],
    [5, 96, 40, True, "hard_swish", 2], [5, 240, 40, True, "hard_swish", 1],
    [5, 240, 40, True, "hard_swish", 1], [5, 120, 48, True, "hard_swish", 1],
    [5, 144, 48, True, "hard_swish", 1], [5, 288, 96, True, "hard_swish", 2],
    [5, 576, 96, True, "hard_swish", 1], [5, 576, 96, True, "hard_swish", 1],
]
_ACTS = (None, "relu", "relu6", "hard_swish")


def make_divisible(v: float, divisor: int = 8, min_value: int = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` without dropping more than 10%."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNLayer(nn.Layer):
    """Conv (no bias, ``conv_decay`` L2, ``lr_mult``) → BatchNorm ``bn`` → relu/relu6/hard_swish/None."""

    def __init__(self, in_c, out_c, filter_size, stride, padding, num_groups=1, act=None,
                 lr_mult=1., conv_decay=0., norm_type="bn", norm_decay=0., freeze_norm=False,
                 name=""):
        super().__init__()
        if act not in _ACTS:
            raise ValueError(f"MobileNetV3 activation must be one of {_ACTS}, got {act!r}")
        self.act = act
        self.conv = nn.Conv2D(in_c, out_c, filter_size, stride=stride, padding=padding,
                              groups=num_groups, bias_attr=False,
                              weight_attr=ParamAttr(learning_rate=lr_mult,
                                                    regularizer=L2Decay(conv_decay)))
        norm_lr = 0. if freeze_norm else lr_mult
        attrs = [ParamAttr(learning_rate=norm_lr, regularizer=L2Decay(norm_decay),
                           trainable=not freeze_norm) for _ in range(2)]
        self.bn = nn.BatchNorm2D(out_c, weight_attr=attrs[0], bias_attr=attrs[1],
                                 use_global_stats=True if freeze_norm else None)
        if freeze_norm:
            for p in self.bn.parameters():
                p.stop_gradient = True

    def forward(self, x):
        x = self.bn(self.conv(x))
        if self.act == "relu":
            return F.relu(x)
        if self.act == "relu6":
            return F.relu6(x)
        if self.act == "hard_swish":
            return F.hardswish(x)
        return x


class SEModule(nn.Layer):
    """Squeeze-excite: x * hardsigmoid(conv2(relu(conv1(avgpool(x))))), slope 0.2 offset 0.5."""

    def __init__(self, channel, lr_mult, conv_decay, reduction=4, name=""):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        mid = int(channel // reduction)

        def attr():
            return ParamAttr(learning_rate=lr_mult, regularizer=L2Decay(conv_decay))

        self.conv1 = nn.Conv2D(channel, mid, 1, weight_attr=attr(), bias_attr=attr())
        self.conv2 = nn.Conv2D(mid, channel, 1, weight_attr=attr(), bias_attr=attr())

    def forward(self, x):
        w = self.conv2(F.relu(self.conv1(self.avg_pool(x))))
        return x * F.hardsigmoid(w, slope=0.2, offset=0.5)


class ResidualUnit(nn.Layer):
    """Inverted residual: 1x1 expand → kxk depthwise → (SE) → 1x1 linear (+ identity shortcut).

    With ``return_list`` it returns [expand output, block output] (SSD-style taps).
    """

    def __init__(self, in_c, mid_c, out_c, filter_size, stride, use_se, lr_mult, conv_decay=0.,
                 norm_type="bn", norm_decay=0., freeze_norm=False, act=None, return_list=False,
                 name=""):
        super().__init__()
        self.if_shortcut = stride == 1 and in_c == out_c
        self.use_se = use_se
        self.return_list = return_list
        common = dict(lr_mult=lr_mult, conv_decay=conv_decay, norm_type=norm_type,
                      norm_decay=norm_decay, freeze_norm=freeze_norm)
        self.expand_conv = ConvBNLayer(in_c, mid_c, 1, 1, 0, act=act, **common)
        self.bottleneck_conv = ConvBNLayer(mid_c, mid_c, filter_size, stride,
                                           (filter_size - 1) // 2, num_groups=mid_c, act=act,
                                           **common)
        if use_se:
            self.mid_se = SEModule(mid_c, lr_mult, conv_decay)
        self.linear_conv = ConvBNLayer(mid_c, out_c, 1, 1, 0, act=None, **common)

    def forward(self, inputs):
        y = self.expand_conv(inputs)
        x = self.bottleneck_conv(y)
        if self.use_se:
            x = self.mid_se(x)
        x = self.linear_conv(x)
        if self.if_shortcut:
            x = inputs + x
        return [y, x] if self.return_list else x


class ExtraBlockDW(nn.Layer):
    """SSDLite extra block: 1x1 → 3x3 depthwise stride 2 → 1x1, all relu6, 'SAME' padding."""

    def __init__(self, in_c, ch_1, ch_2, stride, lr_mult, conv_decay=0., norm_type="bn",
                 norm_decay=0., freeze_norm=False, name=None):
        super().__init__()
        common = dict(act="relu6", lr_mult=lr_mult, conv_decay=conv_decay, norm_type=norm_type,
                      norm_decay=norm_decay, freeze_norm=freeze_norm)
        self.pointwise_conv = ConvBNLayer(in_c, ch_1, 1, 1, "SAME", **common)
        self.depthwise_conv = ConvBNLayer(ch_1, ch_2, 3, stride, "SAME", num_groups=int(ch_1),
                                          **common)
        self.normal_conv = ConvBNLayer(ch_2, ch_2, 1, 1, "SAME", **common)

    def forward(self, x):
        return self.normal_conv(self.depthwise_conv(self.pointwise_conv(x)))


@register
class MobileNetV3(nn.Layer):
    """MobileNetV3. ``forward(inputs)`` takes the inputs dict, reads ``inputs['image']`` [N,3,H,W]
    and returns the maps of ``feature_maps`` (block numbers, stem = 1, first block = 2), in order;
    their channels are ``out_channels``.
    """

    def __init__(self, scale: float = 1.0, model_name: str = "large",
                 feature_maps: Sequence[int] = (6, 12, 15), with_extra_blocks: bool = False,
                 extra_block_filters: Sequence[Sequence[int]] = ((256, 512), (128, 256),
                                                                 (128, 256), (64, 128)),
                 lr_mult_list: Sequence[float] = (1.0, 1.0, 1.0, 1.0, 1.0),
                 conv_decay: float = 0.0, multiplier: float = 1.0, norm_type: str = "bn",
                 norm_decay: float = 0.0, freeze_norm: bool = False):
        super().__init__()
        if isinstance(feature_maps, Integral):
            feature_maps = [feature_maps]
        if model_name not in ("large", "small"):
            raise ValueError(f"MobileNetV3.model_name must be 'large' or 'small', got {model_name!r}")
        if norm_type == "sync_bn" and freeze_norm:
            raise ValueError("MobileNetV3: norm_type sync_bn cannot be used with freeze_norm true")
        self.feature_maps = list(feature_maps)
        self.with_extra_blocks = with_extra_blocks
        self.extra_block_filters = [list(f) for f in extra_block_filters]
        cfg = [list(row) for row in (_LARGE if model_name == "large" else _SMALL)]
        if multiplier != 1.0:  # thins the last three blocks
            cfg[-3][2] = int(cfg[-3][2] * multiplier)
            for row in cfg[-2:]:
                row[1], row[2] = int(row[1] * multiplier), int(row[2] * multiplier)
        self.cfg = cfg
        common = dict(conv_decay=conv_decay, norm_type=norm_type, norm_decay=norm_decay,
                      freeze_norm=freeze_norm)

        inplanes = make_divisible(16 * scale)
        self.conv1 = ConvBNLayer(3, inplanes, 3, 2, 1, act="hard_swish",
                                 lr_mult=lr_mult_list[0], **common)
        self.out_channels: List[int] = []
        self.block_list = []
        for i, (k, exp, c, se, act, s) in enumerate(cfg):
            lr_mult = lr_mult_list[min(i // 3, len(lr_mult_list) - 1)]
            return_list = with_extra_blocks and i + 2 in self.feature_maps
            mid = make_divisible(scale * exp)
            block = self.add_sublayer(f"conv{i + 2}", ResidualUnit(
                inplanes, mid, make_divisible(scale * c), k, s, se, lr_mult, act=act,
                return_list=return_list, **common))
            self.block_list.append(block)
            inplanes = make_divisible(scale * c)
            if i + 2 in self.feature_maps:
                self.out_channels.append(mid if return_list else inplanes)

        self.extra_block_list = []
        if with_extra_blocks:
            idx = len(cfg) + 2
            lr_mult = lr_mult_list[min(len(cfg) // 3, len(lr_mult_list) - 1)]
            extra_c = make_divisible(scale * cfg[-1][1])
            self.extra_block_list.append(self.add_sublayer(f"conv{idx}", ConvBNLayer(
                inplanes, extra_c, 1, 1, 0, act="hard_swish", lr_mult=lr_mult, **common)))
            if idx in self.feature_maps:
                self.out_channels.append(extra_c)
            in_c = extra_c
            for ch_1, ch_2 in self.extra_block_filters:
                idx += 1
                self.extra_block_list.append(self.add_sublayer(f"conv{idx}", ExtraBlockDW(
                    in_c, ch_1, ch_2, 2, lr_mult, **common)))
                if idx in self.feature_maps:
                    self.out_channels.append(ch_2)
                in_c = ch_2

    def forward(self, inputs: dict) -> List[paddle.Tensor]:
        x = self.conv1(inputs["image"])
        outs = []
        for i, block in enumerate(self.block_list + self.extra_block_list):
            idx = i + 2  # block numbers start at 2 (the stem is conv1)
            x = block(x)
            if isinstance(x, list):  # SSD tap: keep the expand output, go on with the block output
                outs.append(x[0])
                x = x[1]
            elif idx in self.feature_maps:
                outs.append(x)
        return outs

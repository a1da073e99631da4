"""EfficientNet b0-b7 backbone (TF variant, as timm's ``tf_efficientnet_b*`` in features-only
mode that effdet uses): stem, 7 stages of MBConv blocks with squeeze-excite and swish, TF "SAME"
padding, BN eps 1e-3 / momentum 0.99, drop-connect. No classifier / conv_head.

State_dict keys equal timm's (``conv_stem``, ``bn1``, ``blocks.{stage}.{block}.conv_pw`` ...),
BN statistics named the Paddle way (``_mean``, ``_variance``).
"""
import math
from typing import Dict, List, Sequence, Union

import paddle
import paddle.nn as nn

from ...core.registry import register
from ..effdet_layers import batch_norm_tf, conv2d_same, drop_connect, fan_in_out, swish

__all__ = ["EfficientNet", "EFFICIENTNET_SCALES", "round_channels"]

# scale: (width multiplier, depth multiplier)
EFFICIENTNET_SCALES = {
    "b0": (1.0, 1.0), "b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4),
    "b4": (1.4, 1.8), "b5": (1.6, 2.2), "b6": (1.8, 2.6), "b7": (2.0, 3.1),
}
# per stage: (block type, repeats, kernel, stride, expansion, out channels); SE ratio 0.25 of
# the block's input channels everywhere. 'ds' = depthwise-separable, 'ir' = inverted residual.
_STAGES = [("ds", 1, 3, 1, 1, 16), ("ir", 2, 3, 2, 6, 24), ("ir", 2, 5, 2, 6, 40),
           ("ir", 3, 3, 2, 6, 80), ("ir", 3, 5, 1, 6, 112), ("ir", 4, 5, 2, 6, 192),
           ("ir", 1, 3, 1, 6, 320)]
_SE_RATIO = 0.25


def round_channels(ch: float, divisor: int = 8) -> int:
    """Nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below ``ch``."""
    new = max(divisor, int(ch + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * ch else new


class SqueezeExcite(nn.Layer):
    """x * sigmoid(expand(swish(reduce(mean_hw(x))))); ``rd_ch`` squeeze channels."""

    def __init__(self, ch: int, rd_ch: int):
        super().__init__()
        self.conv_reduce = nn.Conv2D(ch, rd_ch, 1)
        self.conv_expand = nn.Conv2D(rd_ch, ch, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        # a global average pool, not paddle.mean over H, W: the same numbers, but Paddle
        # Inference's oneDNN reduce_mean made these 16 means half of D0's CPU time at 512 px
        s = paddle.nn.functional.adaptive_avg_pool2d(x, 1)
        s = self.conv_expand(swish(self.conv_reduce(s)))
        return x * paddle.nn.functional.sigmoid(s)


class _Block(nn.Layer):
    """MBConv block. 'ds': dw k x k -> BN,swish -> SE -> pw 1x1 -> BN. 'ir': pw expand -> BN,swish
    -> dw k x k -> BN,swish -> SE -> pw linear -> BN. Residual (with drop-connect) when the
    stride is 1 and channels are unchanged."""

    def __init__(self, kind: str, in_ch: int, out_ch: int, kernel: int, stride: int,
                 expand: int, drop_rate: float, bn_args: dict):
        super().__init__()
        self.kind = kind
        self.has_skip = stride == 1 and in_ch == out_ch
        self.drop_rate = drop_rate
        rd_ch = round(in_ch * _SE_RATIO)
        if kind == "ds":
            self.conv_dw = conv2d_same(in_ch, in_ch, kernel, stride, groups=in_ch)
            self.bn1 = batch_norm_tf(in_ch, **bn_args)
            self.se = SqueezeExcite(in_ch, rd_ch)
            self.conv_pw = conv2d_same(in_ch, out_ch, 1)
            self.bn2 = batch_norm_tf(out_ch, **bn_args)
        else:
            mid = round_channels(in_ch * expand)
            # SE ratio is relative to the block input: round(mid * 0.25 / expand), as timm
            rd_ch = round(mid * (_SE_RATIO / expand))
            self.conv_pw = conv2d_same(in_ch, mid, 1)
            self.bn1 = batch_norm_tf(mid, **bn_args)
            self.conv_dw = conv2d_same(mid, mid, kernel, stride, groups=mid)
            self.bn2 = batch_norm_tf(mid, **bn_args)
            self.se = SqueezeExcite(mid, rd_ch)
            self.conv_pwl = conv2d_same(mid, out_ch, 1)
            self.bn3 = batch_norm_tf(out_ch, **bn_args)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x
        if self.kind == "ds":
            x = self.se(swish(self.bn1(self.conv_dw(x))))
            x = self.bn2(self.conv_pw(x))
        else:
            x = swish(self.bn1(self.conv_pw(x)))
            x = self.se(swish(self.bn2(self.conv_dw(x))))
            x = self.bn3(self.conv_pwl(x))
        if self.has_skip:
            x = drop_connect(x, self.drop_rate, self.training) + shortcut
        return x


@register
class EfficientNet(nn.Layer):
    """``forward(inputs)`` with ``inputs['image']`` [N,3,H,W] (or the tensor itself) -> list of
    the outputs of stages ``return_idx`` (default 2, 4, 6: strides 8, 16, 32 = levels 3-5).

    ``drop_connect_rate`` grows linearly with the block index (block i of n: rate * i / n).
    """

    def __init__(self, scale: str = "b0", return_idx: Sequence[int] = (2, 4, 6),
                 drop_connect_rate: float = 0.2, norm_momentum: float = 0.99,
                 norm_eps: float = 1e-3):
        super().__init__()
        if scale not in EFFICIENTNET_SCALES:
            raise ValueError(f"EfficientNet.scale must be one of {sorted(EFFICIENTNET_SCALES)}, "
                             f"got {scale!r}")
        for i in return_idx:
            if not 0 <= i < len(_STAGES):
                raise ValueError(f"EfficientNet.return_idx {i} is out of range 0..{len(_STAGES) - 1}")
        width, depth = EFFICIENTNET_SCALES[scale]
        self.return_idx = list(return_idx)
        bn_args = dict(momentum=norm_momentum, epsilon=norm_eps)
        stem = round_channels(32 * width)
        self.conv_stem = conv2d_same(3, stem, 3, stride=2)
        self.bn1 = batch_norm_tf(stem, **bn_args)

        repeats = [int(math.ceil(r * depth)) for _, r, *_ in _STAGES]
        total, idx, in_ch = sum(repeats), 0, stem
        stages, self.out_channels = [], []
        for (kind, _, kernel, stride, expand, ch), rep in zip(_STAGES, repeats):
            out_ch = round_channels(ch * width)
            blocks = []
            for b in range(rep):
                blocks.append(_Block(kind, in_ch, out_ch, kernel, stride if b == 0 else 1,
                                     expand, drop_connect_rate * idx / total, bn_args))
                in_ch, idx = out_ch, idx + 1
            stages.append(nn.Sequential(*blocks))
            self.out_channels.append(out_ch)
        self.blocks = nn.LayerList(stages)
        self.out_channels = [self.out_channels[i] for i in self.return_idx]
        self._init_weights()

    def _init_weights(self):
        """timm's EfficientNet init: conv N(0, sqrt(2 / fan_out)), biases 0, BN 1/0."""
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                _, fan_out = fan_in_out(layer.weight, layer._groups)
                layer.weight.set_value(paddle.normal(0., math.sqrt(2. / fan_out),
                                                     layer.weight.shape))
                if layer.bias is not None:
                    layer.bias.set_value(paddle.zeros_like(layer.bias))

    def forward(self, inputs: Union[Dict[str, paddle.Tensor], paddle.Tensor]) -> List[paddle.Tensor]:
        x = inputs["image"] if isinstance(inputs, dict) else inputs
        x = swish(self.bn1(self.conv_stem(x)))
        outs = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in self.return_idx:
                outs.append(x)
            if i >= self.return_idx[-1]:
                break
        return outs

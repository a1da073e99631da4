"""Building blocks shared by EfficientNet, BiFPN and EfficientDetHead (the TF-compatible flavour
that effdet's ``tf_*`` models use): swish, convs with TF "SAME"
padding, BatchNorm with TF's epsilon/momentum, depthwise-separable conv, drop-connect.

Sublayer names (``conv_dw``, ``conv_pw``, ``bn``) equal effdet/timm's, so their state_dict keys
convert by renaming BN statistics only (see ``ppdet_lite/modeling/effdet_convert.py``).
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ["swish", "Swish", "conv2d_same", "batch_norm_tf", "SeparableConv2D", "drop_connect"]


def swish(x: paddle.Tensor) -> paddle.Tensor:
    """x * sigmoid(x) as Paddle's one ``swish`` op: oneDNN fuses it into the conv before it
    (EfficientDet-D0 512 in Paddle Inference: 126 -> 84 ms with the export's bias folds).
    Paddle Lite x86 has no swish kernel; its conversion writes the op out as sigmoid + mul
    (``export.program_edit.split_swish``)."""
    return F.swish(x)


class Swish(nn.Layer):
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return swish(x)


def conv2d_same(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1,
                bias: bool = False) -> nn.Conv2D:
    """Conv2D with TF "SAME" padding: symmetric k//2 at stride 1 (identical for odd kernels),
    Paddle's 'SAME' algorithm (extra pixel after, as TF) at stride 2."""
    padding = kernel_size // 2 if stride == 1 else "SAME"
    return nn.Conv2D(in_ch, out_ch, kernel_size, stride=stride, padding=padding, groups=groups,
                     bias_attr=None if bias else False)


def batch_norm_tf(ch: int, momentum: float = 0.99, epsilon: float = 1e-3) -> nn.BatchNorm2D:
    """BatchNorm2D with TF EfficientNet's epsilon 1e-3 and momentum 0.99 (Paddle's convention:
    running = momentum * running + (1 - momentum) * batch, i.e. torch momentum 0.01)."""
    return nn.BatchNorm2D(ch, momentum=momentum, epsilon=epsilon)


class SeparableConv2D(nn.Layer):
    """Depthwise k x k (no bias) -> pointwise 1x1 (bias optional) -> optional BN; no activation.

    [N, in_ch, H, W] -> [N, out_ch, H, W].
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = True,
                 norm: bool = True, norm_momentum: float = 0.99, norm_eps: float = 1e-3):
        super().__init__()
        self.conv_dw = conv2d_same(in_ch, in_ch, kernel_size, groups=in_ch)
        self.conv_pw = conv2d_same(in_ch, out_ch, 1, bias=bias)
        self.bn = batch_norm_tf(out_ch, norm_momentum, norm_eps) if norm else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv_pw(self.conv_dw(x))
        return self.bn(x) if self.bn is not None else x


def drop_connect(x: paddle.Tensor, rate: float, training: bool) -> paddle.Tensor:
    """Stochastic depth per sample: zero a whole residual branch with probability ``rate`` and
    scale the kept ones by 1/(1-rate). Identity in eval or when ``rate`` is 0."""
    if not training or rate <= 0.:
        return x
    keep = 1. - rate
    mask = paddle.floor(keep + paddle.rand([x.shape[0], 1, 1, 1], dtype=x.dtype))
    return x / keep * mask


def fan_in_out(weight: paddle.Tensor, groups: int = 1):
    """(fan_in, fan_out) of an OIHW conv weight, fan_out divided by ``groups`` (TF convention)."""
    out_ch, in_ch = weight.shape[0], weight.shape[1]
    field = int(math.prod(weight.shape[2:]))
    return in_ch * field, out_ch * field // groups

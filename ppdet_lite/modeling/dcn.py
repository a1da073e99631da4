"""Modulated deformable convolution (DCNv2) built on ``paddle.vision.ops.deform_conv2d``.

A DCNv2 layer is two convolutions: ``conv_offset`` (a plain conv, zero-initialised) predicts, per
output pixel, 2·k² offsets followed by k² mask logits; the deformable conv then samples its input at
the shifted positions and weights each tap by sigmoid(mask).

Parameter names follow PaddleDetection: ``DeformableConvV2`` holds ``conv_offset`` and ``conv_dcn``
(``ppdet.modeling.layers``); ResNet's DCN conv holds ``conv_offset`` and ``conv`` side by side, so it
uses ``offset_conv`` + ``DeformConv2D`` + ``split_offset_mask`` directly.
"""
from typing import Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.nn.initializer import Constant
from paddle.regularizer import L2Decay
from paddle.vision.ops import DeformConv2D

__all__ = ['offset_conv', 'split_offset_mask', 'DeformConv2D', 'DeformableConvV2']


def offset_conv(in_channels: int, kernel_size: int, stride: int = 1,
                bias_attr=None) -> nn.Conv2D:
    """Zero-initialised conv predicting ``3·k²`` channels: 2·k² offsets (dy, dx pairs), then k² masks."""
    return nn.Conv2D(in_channels, 3 * kernel_size ** 2, kernel_size, stride=stride,
                     padding=(kernel_size - 1) // 2,
                     weight_attr=ParamAttr(initializer=Constant(0.)),
                     bias_attr=bias_attr if bias_attr is not None else ParamAttr(initializer=Constant(0.)))


def split_offset_mask(offset_mask: paddle.Tensor, kernel_size: int) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """``[N, 3k², H, W]`` → offsets ``[N, 2k², H, W]`` and sigmoid masks ``[N, k², H, W]``."""
    k2 = kernel_size ** 2
    offset, mask = paddle.split(offset_mask, [2 * k2, k2], axis=1)
    return offset, F.sigmoid(mask)


class DeformableConvV2(nn.Layer):
    """DCNv2: ``[N, C_in, H, W]`` → ``[N, C_out, H/stride, W/stride]``.

    ``bias_attr`` falsy: no bias (backbones). Otherwise the DCN bias is zero-initialised with
    ``dcn_bias_lr_scale`` and ``dcn_bias_regularizer`` (heads). ``lr_scale``/``regularizer`` apply to
    the offset conv's bias, as in PaddleDetection.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, weight_attr=None,
                 bias_attr=None, lr_scale: float = 1., regularizer=None, skip_quant: bool = False,
                 dcn_bias_regularizer=L2Decay(0.), dcn_bias_lr_scale: float = 2.):
        super().__init__()
        self.kernel_size = kernel_size
        offset_bias = None
        if lr_scale != 1 or regularizer is not None:
            offset_bias = ParamAttr(initializer=Constant(0.), learning_rate=lr_scale,
                                    regularizer=regularizer)
        self.conv_offset = offset_conv(in_channels, kernel_size, stride, bias_attr=offset_bias)
        if skip_quant:
            self.conv_offset.skip_quant = True
        dcn_bias = False
        if bias_attr:
            dcn_bias = ParamAttr(initializer=Constant(0.), regularizer=dcn_bias_regularizer,
                                 learning_rate=dcn_bias_lr_scale)
        # `padding` is accepted for signature compatibility; like PaddleDetection the layer always
        # pads to keep "same" geometry: (k - 1) // 2 * dilation.
        self.conv_dcn = DeformConv2D(in_channels, out_channels, kernel_size, stride=stride,
                                     padding=(kernel_size - 1) // 2 * dilation, dilation=dilation,
                                     groups=groups, weight_attr=weight_attr, bias_attr=dcn_bias)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        offset, mask = split_offset_mask(self.conv_offset(x), self.kernel_size)
        return self.conv_dcn(x, offset, mask=mask)

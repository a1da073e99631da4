"""Depthwise convs on small maps as im2col + one batched matmul, for training on a CPU.

Paddle 2.6's CPU ``depthwise_conv2d`` runs one im2col + GEMM per image and channel, so its
cost grows with batch x channels whatever the map size: on a 3x3 map with 1152 channels
(EfficientNet-b0's last stage at 96 px) forward + backward of one conv takes ~470 ms for 16
images, where ``unfold`` (one im2col for all channels) and a matmul broadcast over the batch
take ~120 ms. On large maps the native kernel is faster (48x48, 32 channels: 150 vs 270 ms), so
only convs whose output has at most ``max_pixels`` pixels switch: the config key
``depthwise_matmul_max_pixels`` (``build_model`` applies it; 0, the default, keeps the native
kernel; 36 = 6x6 is where the matmul wins on every shape measured). The results equal the native
kernel's to float rounding (another summation order: relative 1e-6 on one conv's outputs and
gradients, 1e-7 on PP-YOLO Tiny's and 3e-9 on EfficientDet-D0's gradients at 96 px). Training
from scratch amplifies such differences into another trajectory: the shapes demo (seed 0) ends
at AP50 0.664 with it, 0.768 without (one run each); the demo's documented numbers are the
native kernel's, hence off by default.

Measured at 96 px, batch 16, one thread: an EfficientDet-D0 train step 7.9-8.8 s -> 3.6-4.4 s;
a PP-YOLO Tiny demo epoch 63.7 -> 37.8 CPU seconds (1.7x).

Training only: in eval mode (and so in every export) the native op runs, bit for bit.
"""
import math
import types
from typing import List

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

__all__ = ["matmul_depthwise", "use_matmul_depthwise"]


def _same_pads(size: int, k: int, s: int) -> List[int]:
    """Paddle's / TF's 'SAME': output ceil(size / s), the odd pixel of padding after."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return [total // 2, total - total // 2]


def _pads(conv: nn.Conv2D, h: int, w: int):
    """[top, bottom, left, right] for ``conv`` on an h x w map, or None (not handled here)."""
    k, s, p = conv._kernel_size, conv._stride, conv._padding
    if isinstance(p, str):
        if p.upper() == "SAME":
            return _same_pads(h, k[0], s[0]) + _same_pads(w, k[1], s[1])
        return [0, 0, 0, 0] if p.upper() == "VALID" else None
    if isinstance(p, int):
        return [p, p, p, p]
    if len(p) == 2 and all(isinstance(v, int) for v in p):
        return [p[0], p[0], p[1], p[1]]
    return None


def matmul_depthwise(x: paddle.Tensor, weight: paddle.Tensor, bias, stride, pads) -> paddle.Tensor:
    """Depthwise conv of x [N,C,H,W] with weight [C,1,kh,kw] (and bias [C] or None) as
    ``unfold`` + one matmul; ``pads`` [top, bottom, left, right], ``stride`` (sh, sw)."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[2:]
    ho = (h + pads[0] + pads[1] - kh) // stride[0] + 1
    wo = (w + pads[2] + pads[3] - kw) // stride[1] + 1
    cols = F.unfold(x, [kh, kw], strides=list(stride), paddings=[pads[0], pads[2], pads[1], pads[3]])
    out = paddle.matmul(weight.reshape([1, c, 1, kh * kw]), cols.reshape([n, c, kh * kw, ho * wo]))
    out = out.reshape([n, c, ho, wo])
    return out if bias is None else out + bias.reshape([1, c, 1, 1])


def _is_depthwise(conv: nn.Layer) -> bool:
    return (isinstance(conv, nn.Conv2D) and conv._groups > 1 and conv._in_channels == conv._groups
            and conv._out_channels == conv._groups and conv._data_format == "NCHW"
            and tuple(conv._dilation) == (1, 1) and conv._padding_mode == "zeros")


def _forward(self, x: paddle.Tensor) -> paddle.Tensor:
    """A depthwise Conv2D's forward under ``use_matmul_depthwise``."""
    pads = _pads(self, x.shape[2], x.shape[3]) if self.training else None
    if pads is not None:
        s, k = self._stride, self._kernel_size
        pixels = ((x.shape[2] + pads[0] + pads[1] - k[0]) // s[0] + 1) * \
            ((x.shape[3] + pads[2] + pads[3] - k[1]) // s[1] + 1)
        if pixels <= self._matmul_max_pixels:
            return matmul_depthwise(x, self.weight, self.bias, s, pads)
    return nn.Conv2D.forward(self, x)


def use_matmul_depthwise(model: nn.Layer, max_pixels: int = 36) -> int:
    """Make every depthwise Conv2D of ``model`` run ``matmul_depthwise`` while training when
    its output map has at most ``max_pixels`` pixels (0: never); returns how many convs may."""
    count = 0
    for conv in model.sublayers(include_self=True):
        if max_pixels <= 0 and not hasattr(conv, "_matmul_max_pixels"):
            continue  # off: the layers stay as built
        if _is_depthwise(conv):
            conv._matmul_max_pixels = int(max_pixels)
            conv.forward = types.MethodType(_forward, conv)  # deepcopy rebinds it to the copy
            count += 1
    return count

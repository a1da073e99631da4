"""Building blocks shared by the PP-YOLO backbones and necks: ConvBNLayer, DropBlock, SPP, CoordConv.

Sublayer names (``conv``, ``batch_norm``) equal PaddleDetection's, so its state_dict keys load
unchanged. Layouts: ``NCHW`` (default) or ``NHWC``.
"""
from typing import Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.regularizer import L2Decay

__all__ = ["mish", "batch_norm", "ConvBNLayer", "DropBlock", "SPP", "CoordConv", "add_coord",
           "activation"]


def mish(x: paddle.Tensor) -> paddle.Tensor:
    """x * tanh(softplus(x)), Paddle's fused kernel."""
    return F.mish(x)


def activation(x: paddle.Tensor, act: Optional[str]) -> paddle.Tensor:
    """Apply ``act``: 'leaky' (slope 0.1), 'mish', any ``paddle.nn.functional`` name, or None."""
    if act is None or act in ("", "none", "identity"):
        return x
    if act == "leaky":
        return F.leaky_relu(x, 0.1)
    return getattr(F, act)(x)


def batch_norm(ch: int, norm_type: str = "bn", norm_decay: float = 0., freeze_norm: bool = False,
               initializer=None, data_format: str = "NCHW") -> nn.BatchNorm2D:
    """BatchNorm2D (epsilon 1e-5, momentum 0.9) with ``norm_decay`` L2 on scale/shift.

    ``sync_bn`` also gives a plain BatchNorm2D: SyncBatchNorm has no CPU kernel, the trainer
    converts it for multi-GPU runs. ``freeze_norm`` makes scale/shift untrainable.
    """
    if norm_type not in ("bn", "sync_bn"):
        raise ValueError(f"norm_type must be 'bn' or 'sync_bn', got {norm_type!r}")
    lr = 0. if freeze_norm else 1.
    weight_attr = ParamAttr(initializer=initializer, learning_rate=lr,
                            regularizer=L2Decay(norm_decay), trainable=not freeze_norm)
    bias_attr = ParamAttr(learning_rate=lr, regularizer=L2Decay(norm_decay),
                          trainable=not freeze_norm)
    layer = nn.BatchNorm2D(ch, weight_attr=weight_attr, bias_attr=bias_attr, data_format=data_format)
    if freeze_norm:
        for p in layer.parameters():
            p.stop_gradient = True
    return layer


class ConvBNLayer(nn.Layer):
    """Conv (no bias) → BatchNorm → activation. [N,ch_in,H,W] → [N,ch_out,H/stride,W/stride]."""

    def __init__(self, ch_in: int, ch_out: int, filter_size: int = 3, stride: int = 1,
                 groups: int = 1, padding: int = 0, norm_type: str = "bn", norm_decay: float = 0.,
                 act: Optional[str] = "leaky", freeze_norm: bool = False,
                 data_format: str = "NCHW", name: str = ""):
        super().__init__()
        self.conv = nn.Conv2D(ch_in, ch_out, filter_size, stride=stride, padding=padding,
                              groups=groups, data_format=data_format, bias_attr=False)
        self.batch_norm = batch_norm(ch_out, norm_type, norm_decay, freeze_norm,
                                     data_format=data_format)
        self.act = act

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return activation(self.batch_norm(self.conv(x)), self.act)


class DropBlock(nn.Layer):
    """DropBlock (arXiv:1810.12890); identity in eval mode or when ``keep_prob == 1``.

    Seeds are Bernoulli(gamma) with gamma = (1-keep_prob)/block_size² · Π s/(s-block_size+1)
    over the spatial sizes; each seed zeroes a block_size² square (a max-pool of the seed map)
    and the survivors are rescaled by numel/kept.
    """

    def __init__(self, block_size: int, keep_prob: float, name: Optional[str] = None,
                 data_format: str = "NCHW"):
        super().__init__()
        self.block_size = block_size
        self.keep_prob = keep_prob
        self.name = name
        self.data_format = data_format

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not self.training or self.keep_prob == 1:
            return x
        spatial = x.shape[2:] if self.data_format == "NCHW" else x.shape[1:3]
        if min(spatial) < self.block_size:  # the formula divides by zero; no block fits anyway
            return x
        gamma = (1. - self.keep_prob) / self.block_size ** 2
        for s in spatial:
            gamma *= s / (s - self.block_size + 1)
        seeds = paddle.cast(paddle.rand(x.shape) < gamma, x.dtype)
        dropped = F.max_pool2d(seeds, self.block_size, stride=1, padding=self.block_size // 2,
                               data_format=self.data_format)
        mask = 1. - dropped
        return x * mask * (mask.numel() / mask.sum())


class SPP(nn.Layer):
    """Spatial pyramid pooling: concat(x, maxpool_k(x) for k in pool_size) → ConvBNLayer.

    ``ch_in`` is the channels after the concat, i.e. (len(pool_size)+1) × input channels.
    """

    def __init__(self, ch_in: int, ch_out: int, k: int, pool_size: Sequence[int],
                 norm_type: str = "bn", freeze_norm: bool = False, name: str = "",
                 act: Optional[str] = "leaky", data_format: str = "NCHW"):
        super().__init__()
        self.data_format = data_format
        self.pool = [nn.MaxPool2D(size, stride=1, padding=size // 2, data_format=data_format)
                     for size in pool_size]  # no parameters: kept out of the state_dict
        self.conv = ConvBNLayer(ch_in, ch_out, k, padding=k // 2, norm_type=norm_type,
                                freeze_norm=freeze_norm, act=act, data_format=data_format)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        axis = 1 if self.data_format == "NCHW" else -1
        return self.conv(paddle.concat([x] + [pool(x) for pool in self.pool], axis=axis))


def add_coord(x: paddle.Tensor, data_format: str = "NCHW"):
    """Coordinate maps gx, gy, each [N,1,H,W] (NCHW) or [N,H,W,1] (NHWC).

    Values are i / (2·(size-1)) - 1, i.e. they span [-1, -0.5], not [-1, 1]: that is
    PaddleDetection's formula, which its PP-YOLO checkpoints were trained with, so we keep it.
    """
    b = paddle.shape(x)[0]
    h, w = (x.shape[2], x.shape[3]) if data_format == "NCHW" else (x.shape[1], x.shape[2])
    gx = paddle.cast(paddle.arange(w) / ((w - 1.) * 2.0) - 1., x.dtype)
    gy = paddle.cast(paddle.arange(h) / ((h - 1.) * 2.0) - 1., x.dtype)
    if data_format == "NCHW":
        gx = gx.reshape([1, 1, 1, w]).expand([b, 1, h, w])
        gy = gy.reshape([1, 1, h, 1]).expand([b, 1, h, w])
    else:
        gx = gx.reshape([1, 1, w, 1]).expand([b, h, w, 1])
        gy = gy.reshape([1, h, 1, 1]).expand([b, h, w, 1])
    gx.stop_gradient = True
    gy.stop_gradient = True
    return gx, gy


class CoordConv(nn.Layer):
    """Concat two coordinate channels (see ``add_coord``) then ConvBNLayer(ch_in + 2 → ch_out)."""

    def __init__(self, ch_in: int, ch_out: int, filter_size: int, padding: int, norm_type: str,
                 freeze_norm: bool = False, name: str = "", data_format: str = "NCHW"):
        super().__init__()
        self.conv = ConvBNLayer(ch_in + 2, ch_out, filter_size, padding=padding,
                                norm_type=norm_type, freeze_norm=freeze_norm,
                                data_format=data_format)
        self.data_format = data_format

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gx, gy = add_coord(x, self.data_format)
        axis = 1 if self.data_format == "NCHW" else -1
        return self.conv(paddle.concat([x, gx, gy], axis=axis))

"""BiFPN (EfficientDet): extra levels from the last backbone map, then ``fpn_cell_repeats``
bidirectional cells. Each node fuses resampled inputs (fast normalized fusion
relu(w_i) / (sum relu(w) + 1e-4), or a plain sum), then swish -> separable conv 3x3 -> BN.

Resampling as the reference (effdet ``tf_*``): a 1x1 conv (+bias) + BN where channels differ,
max-pool 3x3 stride 2 TF-"SAME" to go down a level, nearest resize to the target's size to go up.
State_dict keys equal effdet's ``fpn.*`` ones (``resample``, ``cell.{r}.fnode.{i}.combine`` ...).
"""
from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ...core.registry import register
from ..effdet_layers import SeparableConv2D, Swish, batch_norm_tf, fan_in_out

__all__ = ["BiFPN", "bifpn_nodes"]


def bifpn_nodes(min_level: int, max_level: int):
    """The BiFPN graph: list of (level, input offsets). Offsets index the growing list
    [inputs P_min..P_max, node 0, node 1, ...]: top-down nodes max-1..min, then bottom-up
    min+1..max (which also take the level's original input and, between, its top-down node)."""
    ids = {lvl: [i] for i, lvl in enumerate(range(min_level, max_level + 1))}
    nodes, next_id = [], max_level - min_level + 1
    for lvl in range(max_level - 1, min_level - 1, -1):
        nodes.append((lvl, [ids[lvl][-1], ids[lvl + 1][-1]]))
        ids[lvl].append(next_id)
        next_id += 1
    for lvl in range(min_level + 1, max_level + 1):
        nodes.append((lvl, ids[lvl] + [ids[lvl - 1][-1]]))
        ids[lvl].append(next_id)
        next_id += 1
    return nodes


class _ConvBN(nn.Layer):
    """1x1 conv with bias + BN (effdet's resample ``conv``: ``conv.conv``, ``conv.bn``)."""

    def __init__(self, in_ch: int, out_ch: int, bn_args: dict):
        super().__init__()
        self.conv = nn.Conv2D(in_ch, out_ch, 1)
        self.bn = batch_norm_tf(out_ch, **bn_args)

    def forward(self, x):
        return self.bn(self.conv(x))


class Resample(nn.Layer):
    """Channel projection where needed, then go ``level_delta`` levels down (max-pool) or up
    (nearest resize to ``size``). Only adjacent levels (|delta| <= 1) occur in a BiFPN."""

    def __init__(self, in_ch: int, out_ch: int, level_delta: int, bn_args: dict):
        super().__init__()
        self.conv = _ConvBN(in_ch, out_ch, bn_args) if in_ch != out_ch else None
        self.level_delta = level_delta
        self.pool = nn.MaxPool2D(3, 2, padding="SAME") if level_delta > 0 else None

    def forward(self, x: paddle.Tensor, size: Sequence[int]) -> paddle.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        if self.level_delta > 0:
            x = self.pool(x)
        elif self.level_delta < 0:
            x = F.interpolate(x, size=list(size), mode="nearest")
        return x


class _Combine(nn.Layer):
    def __init__(self, in_channels: List[int], in_levels: List[int], offsets: List[int],
                 level: int, ch: int, weight_method: str, bn_args: dict):
        super().__init__()
        self.offsets = list(offsets)
        self.weight_method = weight_method
        self.resample = nn.LayerDict({
            str(o): Resample(in_channels[o], ch, level - in_levels[o], bn_args) for o in offsets})
        self.edge_weights = self.create_parameter(
            [len(offsets)], default_initializer=nn.initializer.Constant(1.)) \
            if weight_method == "fastattn" else None

    def forward(self, x: List[paddle.Tensor], size) -> paddle.Tensor:
        nodes = [self.resample[str(o)](x[o], size) for o in self.offsets]
        if self.edge_weights is not None:
            w = F.relu(self.edge_weights)
            # [1]-shaped sum and weights, the same numbers as 0-D ones: Paddle Lite x86 segfaults
            # on a reduce_all sum (keepdim or not) and on 0-D tensors
            norm = paddle.sum(w, axis=0, keepdim=True) + 1e-4
            nodes = [nodes[i] * w[i:i + 1] / norm for i in range(len(nodes))]
        # added in order, bit-equal to add_n, whose ``sum`` op Paddle Lite x86 has no kernel for
        out = nodes[0]
        for node in nodes[1:]:
            out = out + node
        return out


class _Node(nn.Layer):
    def __init__(self, combine: _Combine, ch: int, separable_conv: bool, bn_args: dict):
        super().__init__()
        self.combine = combine
        conv = SeparableConv2D(ch, ch, 3, bias=True, **_sep_bn(bn_args)) if separable_conv \
            else _Conv3BN(ch, bn_args)
        self.after_combine = nn.Sequential(("act", Swish()), ("conv", conv))

    def forward(self, x, size):
        return self.after_combine(self.combine(x, size))


class _Conv3BN(nn.Layer):
    def __init__(self, ch: int, bn_args: dict):
        super().__init__()
        self.conv = nn.Conv2D(ch, ch, 3, padding=1)
        self.bn = batch_norm_tf(ch, **bn_args)

    def forward(self, x):
        return self.bn(self.conv(x))


def _sep_bn(bn_args: dict) -> dict:
    return dict(norm_momentum=bn_args["momentum"], norm_eps=bn_args["epsilon"])


class _Cell(nn.Layer):
    def __init__(self, in_channels: List[int], min_level: int, max_level: int, ch: int,
                 weight_method: str, separable_conv: bool, bn_args: dict):
        super().__init__()
        self.num_levels = max_level - min_level + 1
        graph = bifpn_nodes(min_level, max_level)
        chans = list(in_channels) + [ch] * len(graph)
        levels = list(range(min_level, max_level + 1)) + [lvl for lvl, _ in graph]
        self.node_levels = [lvl - min_level for lvl, _ in graph]
        self.fnode = nn.LayerList([
            _Node(_Combine(chans, levels, offs, lvl, ch, weight_method, bn_args), ch,
                  separable_conv, bn_args) for lvl, offs in graph])

    def forward(self, x: List[paddle.Tensor]) -> List[paddle.Tensor]:
        x = list(x)
        sizes = [t.shape[2:] for t in x]
        for node, lvl in zip(self.fnode, self.node_levels):
            x.append(node(x, sizes[lvl]))
        return x[-self.num_levels:]


@register
class BiFPN(nn.Layer):
    """``forward(feats)``: backbone maps for levels min_level.. (shallowest first) -> list of
    ``max_level - min_level + 1`` maps [N, fpn_channels, H_l, W_l], shallowest first.

    ``weight_method``: 'fastattn' (fast normalized fusion) or 'sum' (D6+).
    """

    def __init__(self, in_channels: Sequence[int] = (40, 112, 320), fpn_channels: int = 64,
                 fpn_cell_repeats: int = 3, min_level: int = 3, max_level: int = 7,
                 weight_method: str = "fastattn", separable_conv: bool = True,
                 norm_momentum: float = 0.99, norm_eps: float = 1e-3):
        super().__init__()
        if weight_method not in ("fastattn", "sum"):
            raise ValueError(f"BiFPN.weight_method must be 'fastattn' or 'sum', got {weight_method!r}")
        num_levels = max_level - min_level + 1
        if not 0 < len(in_channels) <= num_levels:
            raise ValueError(f"BiFPN: {len(in_channels)} input maps for levels {min_level}-{max_level}")
        bn_args = dict(momentum=norm_momentum, epsilon=norm_eps)
        chans = list(in_channels)
        # levels above the backbone's: effdet's ``resample.{level index}``, from the previous map
        self.resample = nn.LayerDict()
        for i in range(len(in_channels), num_levels):
            self.resample[str(i)] = Resample(chans[-1], fpn_channels, 1, bn_args)
            chans.append(fpn_channels)
        self.cell = nn.LayerList()
        for r in range(fpn_cell_repeats):
            self.cell.append(_Cell(chans, min_level, max_level, fpn_channels, weight_method,
                                   separable_conv, bn_args))
            chans = [fpn_channels] * num_levels
        self.out_channels = chans
        self._init_weights()

    def _init_weights(self):
        """effdet's init outside the backbone: glorot-uniform convs (fan_out / groups), biases 0."""
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                fan_in, fan_out = fan_in_out(layer.weight, layer._groups)
                limit = (3. / max(1., (fan_in + fan_out) / 2.)) ** 0.5
                layer.weight.set_value(paddle.uniform(layer.weight.shape, min=-limit, max=limit))
                if layer.bias is not None:
                    layer.bias.set_value(paddle.zeros_like(layer.bias))

    def forward(self, feats: List[paddle.Tensor]) -> List[paddle.Tensor]:
        x = list(feats)
        for key, layer in self.resample.items():
            prev = x[-1]
            size = [(s - 1) // 2 + 1 for s in prev.shape[2:]]
            x.append(layer(prev, size))
        for cell in self.cell:
            x = cell(x)
        return x

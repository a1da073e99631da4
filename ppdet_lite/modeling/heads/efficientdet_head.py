"""EfficientDetHead: a class net and a box net whose separable convs are shared by all levels,
with one BatchNorm per (repeat, level); class bias starts at -log((1 - 0.01) / 0.01).

Per level l the nets give [N, A*num_classes, H_l, W_l] and [N, A*4, H_l, W_l], channel
index = anchor * C + c (anchors as ``anchor_generator.EfficientDetAnchors`` orders them). State_dict
keys equal effdet's ``class_net.*`` / ``box_net.*`` under ``head.``.
"""
import math
from typing import Dict, List, Optional, Sequence

import paddle
import paddle.nn as nn

from ...core.registry import register
from ..anchor_generator import EfficientDetAnchors
from ..effdet_layers import SeparableConv2D, batch_norm_tf, fan_in_out, swish

__all__ = ["EfficientDetHead", "HeadNet"]


class HeadNet(nn.Layer):
    """``repeats`` x (shared separable conv -> BN of that level -> swish), then a shared
    separable ``predict`` conv with ``num_outputs * num_anchors`` channels."""

    def __init__(self, ch: int, num_levels: int, repeats: int, num_outputs: int,
                 num_anchors: int, norm_momentum: float = 0.99, norm_eps: float = 1e-3):
        super().__init__()
        self.num_levels = num_levels
        self.conv_rep = nn.LayerList([SeparableConv2D(ch, ch, 3, bias=True, norm=False)
                                      for _ in range(repeats)])
        self.bn_rep = nn.LayerList([
            nn.LayerList([nn.Sequential(("bn", batch_norm_tf(ch, norm_momentum, norm_eps)))
                          for _ in range(num_levels)]) for _ in range(repeats)])
        self.predict = SeparableConv2D(ch, num_outputs * num_anchors, 3, bias=True, norm=False)
        self.predict.conv_pw.skip_quant = True  # QAT leaves the output conv in float

    def forward(self, feats: List[paddle.Tensor]) -> List[paddle.Tensor]:
        outs = []
        for level, x in enumerate(feats):
            for conv, bns in zip(self.conv_rep, self.bn_rep):
                x = swish(bns[level](conv(x)))
            outs.append(self.predict(x))
        return outs


@register
class EfficientDetHead(nn.Layer):
    """``forward(feats, targets=None)``: BiFPN maps, shallowest first.

    Eval: ``(cls_outs, box_outs)`` lists of per-level logits / box codes. Training: the
    ``loss`` component applied to them and the targets (a dict of losses incl. ``loss``).
    ``self.anchors`` (``EfficientDetAnchors``) covers levels min_level.. one per input map,
    A = num_scales * len(aspect_ratios) anchors per cell.
    """

    def __init__(self, in_channels: Sequence[int] = (64,) * 5, num_classes: int = 90,
                 box_class_repeats: int = 3, min_level: int = 3, num_scales: int = 3,
                 aspect_ratios: Sequence = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4)),
                 anchor_scale: float = 4.0, loss=None, prior_prob: float = 0.01,
                 norm_momentum: float = 0.99, norm_eps: float = 1e-3):
        super().__init__()
        if len(set(in_channels)) != 1:
            raise ValueError(f"EfficientDetHead shares convs across levels: all in_channels must be "
                             f"equal, got {list(in_channels)}")
        ch, levels = in_channels[0], len(in_channels)
        self.num_classes = num_classes
        self.anchors = EfficientDetAnchors(min_level, min_level + levels - 1, num_scales,
                                           aspect_ratios, anchor_scale)
        self.loss = loss
        na = self.anchors.num_anchors
        bn = dict(norm_momentum=norm_momentum, norm_eps=norm_eps)
        self.class_net = HeadNet(ch, levels, box_class_repeats, num_classes, na, **bn)
        self.box_net = HeadNet(ch, levels, box_class_repeats, 4, na, **bn)
        self._init_weights(prior_prob)

    def _init_weights(self, prior_prob: float):
        """effdet's head init: convs N(0, sqrt(1 / fan_in)), biases 0, class bias the prior."""
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                fan_in, _ = fan_in_out(layer.weight, layer._groups)
                layer.weight.set_value(paddle.normal(0., math.sqrt(1. / max(1., fan_in)),
                                                     layer.weight.shape))
                if layer.bias is not None:
                    layer.bias.set_value(paddle.zeros_like(layer.bias))
        bias = self.class_net.predict.conv_pw.bias
        bias.set_value(paddle.full_like(bias, -math.log((1 - prior_prob) / prior_prob)))

    def forward(self, feats: List[paddle.Tensor],
                targets: Optional[Dict[str, paddle.Tensor]] = None):
        cls_outs, box_outs = self.class_net(feats), self.box_net(feats)
        if self.training and targets is not None:
            if self.loss is None:
                raise ValueError("EfficientDetHead has no loss: set 'loss: EfficientDetLoss'")
            return self.loss(cls_outs, box_outs, targets, self.anchors)
        return cls_outs, box_outs

"""DarknetGraph: one of our models described as darknet layers, in darknet's order.

Components implement ``to_darknet(g, src...)`` and call the methods below with absolute layer
indices (-1 = the image). A conv whose input is not the previous layer gets the ``[route]``
darknet needs before it, so the description has the same layers, in the same order, as the
published cfgs. Each ``convolutional`` layer keeps the module it came from, which is how
weights move between a ``.weights`` file and our parameters (``darknet.mapping``).
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import paddle.nn as nn

from .cfg import ACTIVATIONS, Layer, write_cfg_text

__all__ = ["DarknetGraph", "describe"]

_DARKNET_ACT = {v: k for k, v in ACTIVATIONS.items()}


def _conv_attrs(module: nn.Layer, act: Optional[str]) -> Tuple[nn.Conv2D, Dict[str, Any]]:
    conv = module.conv if hasattr(module, "batch_norm") else module
    if not isinstance(conv, nn.Conv2D):
        raise TypeError(f"darknet conv layers come from ConvBNLayer or nn.Conv2D, got {module}")
    bn = hasattr(module, "batch_norm")
    act = module.act if bn else act
    if act not in _DARKNET_ACT:
        raise ValueError(f"activation {act!r} has no darknet equivalent "
                         f"(darknet has {sorted(_DARKNET_ACT, key=str)})")
    k, s, p = conv._kernel_size, conv._stride, conv._padding
    if k[0] != k[1] or s[0] != s[1] or p not in (k[0] // 2, [k[0] // 2] * 2) or list(
            conv._dilation) != [1, 1]:
        raise ValueError(f"{conv}: darknet convs are square, stride-symmetric, padded size//2")
    return conv, dict(filters=conv._out_channels, size=k[0], stride=s[0], pad=k[0] // 2,
                      groups=conv._groups, batch_normalize=bn, activation=_DARKNET_ACT[act],
                      in_channels=conv._in_channels)


class DarknetGraph:
    """Collects ``Layer`` records (``shape`` unknown: (0, 0, 0)); ``modules[i]`` is the module of
    conv layer i."""

    def __init__(self):
        self.layers: List[Layer] = []
        self.modules: Dict[int, nn.Layer] = {}

    @property
    def last(self) -> int:
        return len(self.layers) - 1

    def _add(self, type_: str, inputs: Sequence[int], attrs: Dict[str, Any]) -> int:
        self.layers.append(Layer(len(self.layers), type_, list(inputs), attrs, (0, 0, 0)))
        return self.last

    def _from(self, src: int) -> int:
        """``src`` as the previous layer, adding a [route] to it when needed."""
        return src if src == self.last else self.route([src])

    def conv(self, module: nn.Layer, src: int, act: Optional[str] = None) -> int:
        """A [convolutional] from a ConvBNLayer (its ``act``) or a biased nn.Conv2D (``act``)."""
        _, attrs = _conv_attrs(module, act)
        index = self._add("convolutional", [self._from(src)], attrs)
        self.modules[index] = module
        return index

    def route(self, srcs: Sequence[int], groups: int = 1, group_id: int = 0) -> int:
        return self._add("route", srcs, dict(groups=groups, group_id=group_id))

    def shortcut(self, src: int, frm: int) -> int:
        """src + frm (darknet adds ``from`` to the previous layer)."""
        return self._add("shortcut", [self._from(src), frm], {})

    def sam(self, src: int, frm: int) -> int:
        """src · frm, element-wise."""
        return self._add("sam", [self._from(src), frm], {})

    def maxpool(self, src: int, size: int, stride: int) -> int:
        return self._add("maxpool", [self._from(src)], dict(size=size, stride=stride,
                                                            padding=size - 1))

    def upsample(self, src: int, stride: int = 2) -> int:
        return self._add("upsample", [self._from(src)], dict(stride=stride))

    def yolo(self, src: int, classes: int, mask: Sequence[int], anchors: Sequence[Sequence[float]],
             scale_x_y: float, new_coords: bool) -> int:
        all_anchors = [[float(a) for a in pair] for pair in anchors]
        return self._add("yolo", [self._from(src)], dict(
            classes=classes, anchors=[all_anchors[m] for m in mask], mask=list(mask),
            all_anchors=all_anchors, scale_x_y=float(scale_x_y), new_coords=bool(new_coords)))

    def cfg_text(self, width: int, height: int, extra_net: Optional[Dict[str, Any]] = None) -> str:
        """The description as a darknet cfg (routes written relative, as darknet's own cfgs)."""
        net = dict(batch=1, subdivisions=1, width=width, height=height, channels=3)
        net.update(extra_net or {})
        sections = []
        for lay in self.layers:
            a = lay.attrs
            if lay.type == "convolutional":
                keys = dict(batch_normalize=1) if a["batch_normalize"] else {}
                keys.update(filters=a["filters"], size=a["size"], stride=a["stride"], pad=1)
                if a["groups"] != 1:
                    keys["groups"] = a["groups"]
                keys["activation"] = a["activation"]
            elif lay.type == "route":
                keys = dict(layers=[s - lay.index for s in lay.inputs])
                if a["groups"] != 1:
                    keys.update(groups=a["groups"], group_id=a["group_id"])
            elif lay.type in ("shortcut", "sam"):
                keys = {"from": lay.inputs[1] - lay.index}
                if lay.type == "shortcut":
                    keys["activation"] = "linear"
            elif lay.type == "maxpool":
                keys = dict(size=a["size"], stride=a["stride"])
            elif lay.type == "upsample":
                keys = dict(stride=a["stride"])
            else:  # yolo
                keys = dict(mask=a["mask"], anchors=[v for p in a["all_anchors"] for v in p],
                            classes=a["classes"], num=len(a["all_anchors"]))
                if a["scale_x_y"] != 1.:
                    keys["scale_x_y"] = a["scale_x_y"]
                if a["new_coords"]:
                    keys["new_coords"] = 1
            sections.append((lay.type, keys))
        return write_cfg_text(net, sections)


def describe(model: nn.Layer) -> DarknetGraph:
    """The darknet description of ``model`` (an architecture with ``to_darknet``)."""
    if not hasattr(model, "to_darknet"):
        raise TypeError(f"{type(model).__name__} cannot be described as darknet layers; "
                        "darknet files exist for the YOLOv4 architecture")
    g = DarknetGraph()
    model.to_darknet(g)
    return g

"""Darknet ``.cfg`` files: parse, resolve every layer's inputs and output shape, count parameters,
and write a layer list back as cfg text.

A cfg is INI-like: ``[net]`` first, then one section per layer; layers are numbered from 0 after
``[net]``. ``resolve`` turns each section into a ``Layer`` whose ``inputs`` are absolute layer
indices (-1 = the network input) and whose ``attrs`` hold the typed values that decide the
computation (the keys ``compare`` in ``darknet.mapping`` looks at). Supported layer types:
convolutional, route (with ``groups``/``group_id``), shortcut, maxpool, upsample, sam, yolo.
Anything else is a ``ConfigError`` naming the layer and line.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..core.errors import ConfigError

__all__ = ["Section", "Layer", "parse_cfg", "parse_cfg_text", "resolve", "count_params",
           "ACTIVATIONS", "write_cfg_text"]

# darknet activation name -> ours (ConvBNLayer's ``act``); None = linear
ACTIVATIONS = {"linear": None, "leaky": "leaky", "mish": "mish", "logistic": "sigmoid",
               "swish": "swish", "relu": "relu"}

# keys that only matter to darknet's training or data loading; accepted and ignored here
_TRAIN_ONLY_YOLO = {"jitter", "ignore_thresh", "truth_thresh", "random", "resize", "iou_thresh",
                    "cls_normalizer", "iou_normalizer", "obj_normalizer", "iou_loss",
                    "iou_thresh_kind", "nms_kind", "beta_nms", "max_delta", "objectness_smooth",
                    "counters_per_class", "label_smooth_eps", "focal_loss", "track_history_size",
                    "sim_thresh", "dets_for_track", "dets_for_show", "track_ciou_norm",
                    "embedding_layer", "map", "random_size"}


@dataclass
class Section:
    """One ``[type]`` block: its keys as raw strings and the line it starts on (1-based)."""
    type: str
    values: Dict[str, str]
    line: int


@dataclass
class Layer:
    """A resolved layer: ``index`` (0-based), ``type``, ``inputs`` (absolute indices, -1 = image),
    ``attrs`` (typed values), output ``shape`` (c, h, w) and the ``line`` of its section."""
    index: int
    type: str
    inputs: List[int]
    attrs: Dict[str, Any]
    shape: Tuple[int, int, int]
    line: int = 0
    source: Dict[str, str] = field(default_factory=dict)

    def where(self, path: str = "") -> str:
        at = f" (line {self.line}{' of ' + path if path else ''})" if self.line else ""
        return f"layer {self.index} [{self.type}]{at}"


def parse_cfg_text(text: str, path: str = "<cfg>") -> List[Section]:
    """Sections of a cfg text, ``[net]`` included, comments (# and ;) stripped."""
    sections: List[Section] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ConfigError(f"{path}:{lineno}: section header {raw.strip()!r} lacks ']'")
            sections.append(Section(line[1:-1].strip().lower(), {}, lineno))
            continue
        if "=" not in line:
            raise ConfigError(f"{path}:{lineno}: expected key=value, got {raw.strip()!r}")
        if not sections:
            raise ConfigError(f"{path}:{lineno}: key {line!r} before the first [section]")
        key, value = (s.strip() for s in line.split("=", 1))
        sections[-1].values[key] = value
    if not sections or sections[0].type not in ("net", "network"):
        raise ConfigError(f"{path}: a darknet cfg starts with a [net] section")
    return sections


def parse_cfg(path: str) -> List[Section]:
    if not os.path.isfile(path):
        raise ConfigError(f"darknet cfg {path!r} does not exist; pass the .cfg the weights were "
                          "trained with")
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_cfg_text(f.read(), path)


def _ints(text: str) -> List[int]:
    return [int(v) for v in text.replace(" ", "").split(",") if v]


def _floats(text: str) -> List[float]:
    return [float(v) for v in text.replace(" ", "").split(",") if v]


class _Reader:
    """Typed access to a section's values with errors naming layer and line."""

    def __init__(self, sec: Section, index: int, path: str):
        self.sec, self.index, self.path, self.used = sec, index, path, set()

    def get(self, key: str, default=None, kind=int):
        self.used.add(key)
        if key not in self.sec.values:
            return default
        try:
            return kind(self.sec.values[key])
        except ValueError:
            raise ConfigError(f"{self.path}:{self.sec.line}: layer {self.index} [{self.sec.type}] "
                              f"{key}={self.sec.values[key]!r} is not a valid "
                              f"{kind.__name__}") from None

    def fail(self, msg: str):
        raise ConfigError(f"{self.path}:{self.sec.line}: layer {self.index} "
                          f"[{self.sec.type}]: {msg}")

    def unsupported(self, keys: Sequence[str], ok=lambda v: False):
        for key in keys:
            if key in self.sec.values and not ok(self.sec.values[key]):
                self.fail(f"{key}={self.sec.values[key]} is not supported by ppdet_lite's darknet "
                          "reader; remove it or use a model without it")


def _abs(ref: int, index: int, r: _Reader) -> int:
    src = index + ref if ref < 0 else ref
    if not 0 <= src < index:
        r.fail(f"refers to layer {ref}, which is not an earlier layer")
    return src


def resolve(sections: List[Section], width: Optional[int] = None, height: Optional[int] = None,
            path: str = "<cfg>") -> List[Layer]:
    """Layers with absolute inputs and output shapes for an input of ``width`` x ``height``
    (default: the cfg's [net] width/height)."""
    net = _Reader(sections[0], -1, path)
    w = width or net.get("width", 416)
    h = height or net.get("height", 416)
    c = net.get("channels", 3)
    layers: List[Layer] = []

    def shape_of(i: int) -> Tuple[int, int, int]:
        return (c, h, w) if i < 0 else layers[i].shape

    for index, sec in enumerate(sections[1:]):
        r = _Reader(sec, index, path)
        prev = index - 1
        t = sec.type
        if t in ("convolutional", "conv"):
            t = "convolutional"
            r.unsupported(["share_index", "stride_x", "stride_y"])
            r.unsupported(["binary", "xnor", "antialiasing", "assisted_excitation", "deform"],
                          ok=lambda v: v.strip() == "0")
            r.unsupported(["dilation"], ok=lambda v: v.strip() == "1")
            size, stride = r.get("size", 1), r.get("stride", 1)
            pad = size // 2 if r.get("pad", 0) else r.get("padding", 0)
            act_name = r.get("activation", "logistic", str)
            if act_name not in ACTIVATIONS:
                r.fail(f"activation={act_name} is not supported; use one of {sorted(ACTIVATIONS)}")
            ci, hi, wi = shape_of(prev)
            groups = r.get("groups", 1)
            filters = r.get("filters", 1)
            if ci % groups or filters % groups:
                r.fail(f"groups={groups} does not divide {ci} input channels / {filters} filters")
            attrs = dict(filters=filters, size=size, stride=stride, pad=pad, groups=groups,
                         batch_normalize=bool(r.get("batch_normalize", 0)),
                         activation=act_name, in_channels=ci)
            shape = (filters, (hi + 2 * pad - size) // stride + 1,
                     (wi + 2 * pad - size) // stride + 1)
            layers.append(Layer(index, t, [prev], attrs, shape, sec.line, sec.values))
        elif t == "route":
            srcs = [_abs(v, index, r) for v in _ints(r.get("layers", "", str))]
            if not srcs:
                r.fail("route needs layers=")
            groups, group_id = r.get("groups", 1), r.get("group_id", 0)
            shapes = [shape_of(s) for s in srcs]
            if len({s[1:] for s in shapes}) != 1:
                r.fail(f"routes layers of different sizes {[s[1:] for s in shapes]}")
            if any(s[0] % groups for s in shapes) or not 0 <= group_id < groups:
                r.fail(f"groups={groups} group_id={group_id} do not split the inputs' channels")
            ch = sum(s[0] // groups for s in shapes)
            layers.append(Layer(index, t, srcs, dict(groups=groups, group_id=group_id),
                                (ch,) + shapes[0][1:], sec.line, sec.values))
        elif t == "shortcut":
            r.unsupported(["weights_type", "weights_normalization"],
                          ok=lambda v: v.strip() == "none")
            srcs = [_abs(v, index, r) for v in _ints(r.get("from", "", str))]
            if len(srcs) != 1:
                r.fail("only a single from= is supported")
            act = r.get("activation", "linear", str)
            if act != "linear":
                r.fail(f"activation={act} after a shortcut is not supported")
            if shape_of(prev) != shape_of(srcs[0]):
                r.fail(f"adds layers of shapes {shape_of(prev)} and {shape_of(srcs[0])}")
            layers.append(Layer(index, t, [prev, srcs[0]], {}, shape_of(prev), sec.line,
                                sec.values))
        elif t == "sam":
            srcs = [_abs(v, index, r) for v in _ints(r.get("from", "", str))]
            if len(srcs) != 1 or shape_of(prev) != shape_of(srcs[0]):
                r.fail("sam needs one from= layer of the previous layer's shape")
            layers.append(Layer(index, t, [prev, srcs[0]], {}, shape_of(prev), sec.line,
                                sec.values))
        elif t in ("maxpool", "max"):
            t = "maxpool"
            r.unsupported(["stride_x", "stride_y", "maxpool_depth", "antialiasing"],
                          ok=lambda v: v.strip() == "0")
            stride = r.get("stride", 1)
            size = r.get("size", stride)
            padding = r.get("padding", size - 1)
            ci, hi, wi = shape_of(prev)
            shape = (ci, (hi + padding - size) // stride + 1, (wi + padding - size) // stride + 1)
            layers.append(Layer(index, t, [prev], dict(size=size, stride=stride, padding=padding),
                                shape, sec.line, sec.values))
        elif t == "upsample":
            stride = r.get("stride", 2)
            if stride < 1 or r.get("scale", 1., float) != 1.:
                r.fail("only upsampling (stride >= 1, scale 1) is supported")
            ci, hi, wi = shape_of(prev)
            layers.append(Layer(index, t, [prev], dict(stride=stride),
                                (ci, hi * stride, wi * stride), sec.line, sec.values))
        elif t in ("yolo", "region"):
            if t == "region":
                r.fail("[region] (YOLOv2) is not supported")
            classes = r.get("classes", 20)
            anchors = _floats(r.get("anchors", "", str))
            num = r.get("num", len(anchors) // 2)
            mask = _ints(r.get("mask", "", str)) or list(range(num))
            # darknet reads min(num, listed) anchors; cspx-p7-mish.cfg lists 20 with num=16 and
            # masks up to 19, so the listed anchors are what the masks index
            if len(anchors) % 2 or any(not 0 <= 2 * m + 1 < len(anchors) for m in mask):
                r.fail(f"anchors= lists {len(anchors) / 2:g} anchors; mask={mask} needs "
                       f"{max(mask) + 1}")
            ci = shape_of(prev)[0]
            if ci != len(mask) * (classes + 5):
                r.fail(f"the previous layer has {ci} filters, but {len(mask)} anchors x "
                       f"(classes={classes} + 5) = {len(mask) * (classes + 5)}; set filters="
                       f"{len(mask) * (classes + 5)} in the [convolutional] before it")
            pairs = [[anchors[2 * i], anchors[2 * i + 1]] for i in range(len(anchors) // 2)]
            attrs = dict(classes=classes, anchors=[pairs[m] for m in mask], mask=mask,
                         all_anchors=pairs,
                         scale_x_y=r.get("scale_x_y", 1., float),
                         new_coords=bool(r.get("new_coords", 0)))
            layers.append(Layer(index, "yolo", [prev], attrs, shape_of(prev), sec.line,
                                sec.values))
        else:
            r.fail(f"layer type [{t}] is not supported (supported: convolutional, route, "
                   "shortcut, maxpool, upsample, sam, yolo)")
    return layers


def count_params(layers: Sequence[Layer], trainable: bool = True) -> int:
    """Parameters of the conv layers: weights + BN scale/shift (or bias); with
    ``trainable=False`` also the BN running mean/variance, i.e. the floats of a .weights file."""
    total = 0
    for lay in layers:
        if lay.type != "convolutional":
            continue
        a = lay.attrs
        n = a["filters"]
        total += n * (a["in_channels"] // a["groups"]) * a["size"] ** 2
        total += (2 if trainable else 4) * n if a["batch_normalize"] else n
    return total


def _fmt(v) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    return str(v)


def write_cfg_text(net: Dict[str, Any], sections: Sequence[Tuple[str, Dict[str, Any]]]) -> str:
    """cfg text from a [net] dict and (type, keys) pairs, in order."""
    out = ["[net]"] + [f"{k}={_fmt(v)}" for k, v in net.items()] + [""]
    for t, values in sections:
        out.append(f"[{t}]")
        out += [f"{k}={_fmt(v)}" for k, v in values.items()]
        out.append("")
    return "\n".join(out)

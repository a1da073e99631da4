"""Channel dependencies of a dygraph detector, traced once, and filter pruning that follows them
through concats, residual adds and depthwise convs.

``ChannelGraph(model, image_shape)`` runs the eval forward (post-process excluded) once as a
static Program (PaddleSlim's ``dygraph2program``: the Python forward recorded op by op) and walks
its ops, giving every channel of every variable an id in a union-find:

  conv (groups 1), DCN          fresh ids for its output channels; its input ids are the
                                positions of its weight's axis 1
  depthwise conv                output ids = input ids (its filters and groups follow them)
  BatchNorm, activations, pool, pass ids through (BN's scale, shift and statistics follow them)
  resize, scale, dropout, cast
  concat on axis 1              concatenates the id lists; an input no conv produced (CoordConv's
                                coordinates) gets fixed ids
  add / sub / mul / ... of two  unions ids pairwise (residual adds, SE's ``x * gate``); a conv's
  maps of equal channels        own bias, or a broadcast over channels, passes ids through
  anything else                 pins the ids it reads: reshape, transpose, grouped convs, head
                                outputs, and slice / split on channels (their bounds are graph
                                constants, but the layer's code may derive them from the channel
                                count: neither side of the cut may change size)

A union-find class is one channel "slot": every filter producing it and every input position
reading it is removed together. Pruning a conv at ratio r removes ``round(r · slots)`` of its
output slots, ranked over all filters of each slot (``l1_norm``: sum of the filters' L1 norms;
``fpgm``: sum over producing layers of each filter's distance to the layer's other filters,
smallest first, i.e. the filters nearest the geometric median). A conv with a pinned slot cannot
be pruned. When a named layer's slots are tied to an earlier layer of the same call (a residual
add), they are pruned once, with the earlier layer's ratio.
"""
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from ..core.errors import ConfigError
from ..engine.model_stats import dummy_inputs, traceable
from ..utils.logger import get_logger

logger = get_logger(__name__)

__all__ = ["ChannelGraph", "PrunePlan"]

CONVS = {"conv2d", "depthwise_conv2d", "deformable_conv"}
UNARY = {"relu", "relu6", "leaky_relu", "hard_swish", "hard_sigmoid", "sigmoid", "swish", "silu",
         "mish", "tanh", "softplus", "elu", "gelu", "exp", "abs", "sqrt", "square", "pow", "clip",
         "scale", "cast", "assign", "dropout", "pool2d", "nearest_interp_v2", "bilinear_interp_v2",
         "nearest_interp", "bilinear_interp"}
BINARY = {"elementwise_add", "elementwise_sub", "elementwise_mul", "elementwise_div",
          "elementwise_max", "elementwise_min", "elementwise_pow"}
NORMS = {"batch_norm", "sync_batch_norm"}
SHAPE_ONLY = {"shape", "size"}  # read the shape, not the values
PARAM_VIEWS = {"reshape2", "unsqueeze2", "squeeze2", "assign", "cast"}


class PrunePlan:
    """What one ``ChannelGraph.prune`` removed: ``removed[path] = (output positions, input
    positions)`` per shrunk layer (state_dict prefix); ``restore(model)`` puts the tensors back."""

    def __init__(self, graph: "ChannelGraph"):
        self.graph = graph
        self.removed: Dict[str, Tuple[List[int], List[int]]] = {}
        self._backup: List[Tuple[paddle.Tensor, np.ndarray]] = []
        self._attrs: List[Tuple[nn.Layer, Dict[str, int]]] = []

    def shrink(self, path: str, layer: nn.Layer, out: List[int], inn: List[int]) -> None:
        self.removed[path] = (out, inn)
        self._attrs.append((layer, {k: getattr(layer, k) for k in
                                    ("_groups", "_in_channels", "_out_channels") if hasattr(layer, k)}))
        depthwise = path in self.graph.depthwise
        for tensor in list(layer._parameters.values()) + list(layer._buffers.values()):
            if tensor is None:
                continue
            value = tensor.numpy()
            self._backup.append((tensor, value))
            if tensor.ndim == 4:  # conv weight [out, in / groups, kh, kw]
                value = np.delete(value, out, axis=0)
                value = value if depthwise else np.delete(value, inn, axis=1)
            elif tensor.ndim == 1 and value.shape[0] == len(self.graph.channels(path)):
                value = np.delete(value, out, axis=0)
            _set(tensor, value)
        if depthwise:
            layer._groups = layer._in_channels = layer._out_channels = layer.weight.shape[0]
        elif isinstance(layer, nn.Conv2D):
            layer._out_channels, layer._in_channels = layer.weight.shape[0], layer.weight.shape[1]

    def restore(self, model: Optional[nn.Layer] = None) -> None:
        """Undo the prune (``model`` is accepted for PaddleSlim's plan signature)."""
        for tensor, value in self._backup:
            _set(tensor, value)
        for layer, attrs in self._attrs:
            for k, v in attrs.items():
                setattr(layer, k, v)
        self._backup, self._attrs = [], []
        self.graph.pruned = False


def _set(tensor: paddle.Tensor, value: np.ndarray) -> None:
    """Replace a tensor's value, shape included (a parameter's stale gradient is dropped)."""
    if not tensor.stop_gradient and tensor.grad is not None:
        tensor.clear_gradient(False)
    place = tensor.place
    place = paddle.CUDAPlace(place.gpu_device_id()) if place.is_gpu_place() else paddle.CPUPlace()
    tensor.value().get_tensor().set(np.ascontiguousarray(value), place)


class ChannelGraph:
    """The channel slots of ``model`` (see the module docstring); ``prune`` removes some.

    ``producers`` / ``consumers`` / ``depthwise`` / ``norms``: ``{layer path: channel ids}`` of a
    conv's outputs / a conv's inputs / a depthwise conv's channels / a BatchNorm's channels.
    """

    def __init__(self, model: nn.Layer, image_shape: Sequence[int], criterion: str = "fpgm"):
        self.criterion = criterion
        self.layers: Dict[str, nn.Layer] = {}
        self.owner: Dict[str, str] = {}  # parameter / buffer name → layer path
        for path, layer in model.named_sublayers():
            for t in list(layer._parameters.values()) + list(layer._buffers.values()):
                if t is not None:
                    self.owner[t.name] = path
                    self.layers[path] = layer
        self.parent: List[int] = []
        self.pinned: List[int] = []
        self.producers: Dict[str, List[int]] = {}
        self.consumers: Dict[str, List[int]] = {}
        self.depthwise: Dict[str, List[int]] = {}
        self.norms: Dict[str, List[int]] = {}
        self.pruned = False
        self._walk(_trace(model, image_shape))
        self.root = np.array([self.find(i) for i in range(len(self.parent))], dtype=np.int64)
        self._pinned_roots = set(self.root[self.pinned].tolist())

    # union-find over channel ids
    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def _union(self, a: Sequence[int], b: Sequence[int]) -> None:
        for x, y in zip(a, b):
            x, y = self.find(x), self.find(y)
            if x != y:
                self.parent[max(x, y)] = min(x, y)

    def _fresh(self, n: int, pin: bool = False) -> List[int]:
        ids = list(range(len(self.parent), len(self.parent) + n))
        self.parent.extend(ids)
        if pin:
            self.pinned.extend(ids)
        return ids

    def _record(self, table: Dict[str, List[int]], path: str, ids: List[int]) -> List[int]:
        """A layer called twice shares its channels: the second call's ids join the first's."""
        if path in table:
            self._union(table[path], ids)
        else:
            table[path] = list(ids)
        return table[path]

    def _walk(self, block) -> None:
        ids: Dict[str, List[int]] = {}
        made_by: Dict[str, str] = {}   # var → path of the conv whose output it is
        param_of: Dict[str, str] = {}  # var → the parameter it is a view of (a reshaped bias)
        read: Set[str] = set()

        def channels(var: str) -> int:
            return int(block.var(var).shape[1])

        def pin(names: Sequence[str]) -> None:
            for n in names:
                self.pinned.extend(ids.get(n, []))

        def param(var: str) -> Optional[str]:
            return param_of.get(var, var if block.var(var).persistable else None)

        for op in block.ops:
            t = op.type
            inputs = [n for k in op.input_names for n in op.input(k)]
            read.update(inputs)
            if t in SHAPE_ONLY:
                continue
            if t in PARAM_VIEWS and op.input("X") and param(op.input("X")[0]):
                param_of[op.output("Out")[0]] = param(op.input("X")[0])
                continue
            if t in CONVS:
                self._conv(op, ids, made_by, channels, pin)
            elif t in NORMS:
                x, y = op.input("X")[0], op.output("Y")[0]
                if x in ids:
                    path = self.owner[(op.input("Scale") or op.input("Mean"))[0]]
                    ids[y] = self._record(self.norms, path, ids[x])
            elif t in UNARY and op.input("X") and op.input("X")[0] in ids:
                pin([n for n in inputs if n != op.input("X")[0]])
                ids[op.output("Out")[0]] = ids[op.input("X")[0]]
            elif t == "concat" and not op.input("AxisTensor") and any(x in ids for x in inputs):
                xs = op.input("X")
                if op.attr("axis") % len(block.var(xs[0]).shape) != 1:
                    pin(xs)
                else:
                    ids[op.output("Out")[0]] = [i for x in xs for i in
                                                (ids[x] if x in ids else self._fresh(channels(x), True))]
            elif t in BINARY and (op.input("X")[0] in ids or op.input("Y")[0] in ids):
                out = self._binary(op, block, ids, made_by, param, pin)
                if out is not None:
                    ids[op.output("Out")[0]] = out
            else:
                pin(inputs)
        for var, var_ids in ids.items():  # graph outputs
            if var not in read:
                self.pinned.extend(var_ids)
            elif len(var_ids) != channels(var):
                raise RuntimeError(f"channel tracing: {var} has {channels(var)} channels but "
                                   f"{len(var_ids)} ids")

    def _conv(self, op, ids, made_by, channels, pin) -> None:
        x, w, out = op.input("Input")[0], op.input("Filter")[0], op.output("Output")[0]
        if op.has_attr("data_format") and op.attr("data_format") not in ("NCHW", "AnyLayout"):
            raise ConfigError("pruning traces NCHW convs only; build the model with "
                              "data_format: NCHW to prune it")
        path, groups = self.owner[w], op.attr("groups")
        layer = self.layers[path]
        pin(op.input("Offset") + op.input("Mask") if op.type == "deformable_conv" else [])
        c_in, c_out = channels(x), int(layer.weight.shape[0])
        made_by[out] = path
        if groups > 1 and groups == c_in == c_out:
            ids[out] = self._record(self.depthwise, path, ids[x] if x in ids else self._fresh(c_in, True))
        elif groups == 1:
            if x in ids:
                self._record(self.consumers, path, ids[x])
            if path not in self.producers:  # a second call of the layer reuses its filters
                self.producers[path] = self._fresh(c_out)
            ids[out] = self.producers[path]
        else:
            pin([x])
            ids[out] = self._fresh(c_out, True)

    def _binary(self, op, block, ids, made_by, param, pin) -> Optional[List[int]]:
        """Ids of an element-wise op's output, or None (inputs pinned) when it mixes channels."""
        x, y = op.input("X")[0], op.input("Y")[0]
        if x not in ids or (y in ids and len(ids[y]) > len(ids[x])):
            x, y = y, x  # x: the tracked operand with the most channels
        nd = len(block.var(x).shape)

        def channel_size(var: str) -> int:  # the other operand's extent on x's channel axis
            shape = block.var(var).shape
            axis = op.attr("axis") if op.has_attr("axis") else -1
            if len(shape) == nd:
                return int(shape[1])
            if axis == 1 and len(shape) >= 1:
                return int(shape[0])
            return int(shape[0]) if len(shape) == nd - 1 else 1

        cy = channel_size(y)
        if y in ids and cy == len(ids[x]):
            self._union(ids[x], ids[y])
            return ids[x]
        if cy == 1:
            pin([y])
            return ids[x]
        conv = self.layers.get(made_by.get(x, ""))
        bias = getattr(conv, "bias", None)
        if y not in ids and bias is not None and param(y) == bias.name:
            return ids[x]
        pin([x, y])
        return None

    # queries
    def channels(self, path: str) -> List[int]:
        """The channel ids a layer's outputs (or a BN's / depthwise conv's channels) carry."""
        return self.producers.get(path) or self.depthwise.get(path) or self.norms.get(path) or []

    def slots(self, path: str) -> List[int]:
        """The distinct classes of a conv's output channels, in order; [] when one is pinned
        (it reaches a reshape, a head output, a channel slice ...) or the conv is not a plain one."""
        if path not in self.producers:
            return []
        roots = list(dict.fromkeys(self.root[self.producers[path]].tolist()))
        return [] if self._pinned_roots.intersection(roots) else roots

    def _scores(self, slots: List[int], criterion: str) -> np.ndarray:
        where = {r: k for k, r in enumerate(slots)}
        score = np.zeros(len(slots))
        for path, out in self.producers.items():
            rows = [(j, where[r]) for j, r in enumerate(self.root[out].tolist()) if r in where]
            if not rows:
                continue
            w = self.layers[path].weight.numpy().reshape(len(out), -1)
            w = w[[j for j, _ in rows]]
            if criterion == "l1_norm":
                s = np.abs(w).sum(1)
            else:
                sq = (w * w).sum(1)
                s = np.sqrt(np.maximum(sq[:, None] + sq[None] - 2 * w @ w.T, 0)).sum(1)
            np.add.at(score, [k for _, k in rows], s)
        return score

    def prune(self, ratios: Sequence[Tuple[str, float]]) -> PrunePlan:
        """Prune ``[(layer path, ratio)]`` in place; returns the plan (``plan.restore()``)."""
        if self.pruned:
            raise RuntimeError("this ChannelGraph already pruned its model: restore that plan, or "
                               "trace the pruned model again (make_pruner)")
        chosen: Set[int] = set()
        decided: Set[int] = set()
        for path, ratio in ratios:
            slots = self.slots(path)
            if not slots:
                raise ConfigError(f"pruned_params: {path!r} cannot be pruned: its output channels "
                                  "reach a reshape, a head output or a channel slice")
            if decided.intersection(slots):
                logger.info(f"prune: {path} is tied to an earlier layer of the list (a residual "
                            "add or SE gate); pruned once, with that layer's ratio")
                continue
            decided.update(slots)
            n = min(int(round(len(slots) * ratio)), len(slots) - 1)
            if n > 0:
                order = np.argsort(self._scores(slots, self.criterion), kind="stable")
                chosen.update(slots[k] for k in order[:n])
        plan, chosen_ = PrunePlan(self), np.array(sorted(chosen), dtype=np.int64)

        def cut(ids: List[int]) -> List[int]:
            return np.flatnonzero(np.isin(self.root[ids], chosen_)).tolist() if ids else []
        for path, layer in self.layers.items():
            out, inn = cut(self.channels(path)), cut(self.consumers.get(path, []))
            if out or inn:
                plan.shrink(path, layer, out, inn)
        self.pruned = bool(plan.removed)
        return plan


def _trace(model: nn.Layer, image_shape: Sequence[int]):
    """The eval forward (no post-process) of one image as a static Program's global block."""
    from paddleslim.core import dygraph2program

    try:
        with traceable(model):
            return dygraph2program(model, dummy_inputs(image_shape)).global_block()
    finally:
        if not paddle.in_dynamic_mode():  # dygraph2program leaves static mode on when it fails
            paddle.disable_static()

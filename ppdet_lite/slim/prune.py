"""Filter pruning (L1-norm / FPGM) on a dygraph detector, layers chosen by stable names.

PaddleDetection's prune configs name layers by generated parameter names (``conv2d_56.w_0``) that
change with construction order. Here a layer is its state_dict prefix: ``neck.yolo_block.0.tip``,
``neck.yolo_block.0.conv_module.conv1`` (PP-YOLO FPN), ``backbone.conv13.expand_conv``. Any prefix
holding exactly one conv weight resolves (``....tip``, ``....tip.conv``, ``....tip.conv.weight``).

Pruning removes output filters (axis 0) of the named convs and, through the channel dependencies
``channel_graph.ChannelGraph`` traces (our own, not PaddleSlim's pruner: PaddleSlim 2.6 cannot
follow a cut through a concat, so CoordConv / SPP inputs and FPN transitions were refused), the
BatchNorms, depthwise convs, convs tied by residual adds and the input channels of every conv
that reads them, concat positions included. A pruned checkpoint is a plain state_dict with
smaller tensors: ``load_pruned_weights`` fits a fresh model to it.

FLOPs are PaddleSlim's ``dygraph_flops`` count (multiply-adds of conv/matmul plus element-wise
ops) at batch 1 without post-processing; parameters count the trainable ones.
"""
import difflib
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from ..core.errors import ConfigError
from ..core.registry import register
from ..engine.model_stats import count_flops, count_params
from ..utils.logger import get_logger
from .channel_graph import ChannelGraph, PrunePlan

logger = get_logger(__name__)

__all__ = ["Pruner", "conv_layers", "resolve_layer", "make_pruner", "prunable_layers",
           "count_flops", "count_params", "sensitivity", "propose_ratios",
           "format_sensitivity", "apply_ratios", "load_pruned_weights", "CRITERIA"]

CRITERIA = ("l1_norm", "fpgm")
_GENERATED = re.compile(r"^(conv2d|batch_norm2d|linear)_\d+(\.[wb]_\d+)?$")


def _display(key: str) -> str:
    """``neck.yolo_block.0.tip.conv`` → ``neck.yolo_block.0.tip`` (CoordConv's ``.conv.conv`` too)."""
    while key.endswith(".conv"):
        key = key[: -len(".conv")]
    return key


def conv_layers(model: nn.Layer) -> Dict[str, nn.Conv2D]:
    """Every Conv2D by stable name (its state_dict prefix without trailing ``.conv``)."""
    return {_display(name): layer for name, layer in model.named_sublayers()
            if isinstance(layer, nn.Conv2D)}


def resolve_layer(model: nn.Layer, name: str) -> str:
    """The stable name of the one conv that ``name`` points to; ``ConfigError`` otherwise.

    ``name`` may be the stable name, the conv's sublayer path, its ``.weight`` key, or any prefix
    holding exactly one conv.
    """
    convs = conv_layers(model)
    key = name[: -len(".weight")] if name.endswith(".weight") else name
    key = _display(key)
    if key in convs:
        return key
    if _GENERATED.match(name):
        example = next((k for k in convs if k.endswith(".tip")), next(iter(convs)))
        raise ConfigError(
            f"pruned_params: {name!r} is a generated parameter name (PaddleDetection style); these "
            f"depend on construction order and do not identify a layer here. Name the layer by its "
            f"structured name instead, e.g. {example!r}; ppdet_lite.slim.prunable_layers(model) "
            "lists them")
    under = [k for k in convs if k.startswith(key + ".")]
    if len(under) == 1:
        return under[0]
    if len(under) > 1:
        raise ConfigError(f"pruned_params: {name!r} holds {len(under)} convs; name one of them: "
                          f"{under[:12]}{' ...' if len(under) > 12 else ''}")
    close = difflib.get_close_matches(key, list(convs), n=5, cutoff=0.5)
    raise ConfigError(f"pruned_params: no conv layer named {name!r} in this model; closest names: "
                      f"{close or sorted(convs)[:8]}. List all with "
                      f"ppdet_lite.slim.prunable_layers(model)")


def _paths(model: nn.Layer) -> Dict[str, str]:
    """stable name → sublayer path of every Conv2D."""
    return {_display(name): name for name, layer in model.named_sublayers()
            if isinstance(layer, nn.Conv2D)}


def make_pruner(model: nn.Layer, criterion: str = "fpgm",
                image_shape: Sequence[int] = (3, 640, 640)) -> ChannelGraph:
    """The channel dependencies of ``model`` (one trace of its eval forward: ~1 s for PP-YOLO
    R50vd), ready to prune with ``criterion``."""
    if criterion not in CRITERIA:
        raise ConfigError(f"Pruner.criterion {criterion!r}: expected one of {list(CRITERIA)}")
    return ChannelGraph(model, image_shape, criterion)


def prunable_layers(model: nn.Layer, pruner: Optional[ChannelGraph] = None) -> List[str]:
    """Stable names of the convs whose filters can be pruned.

    With a ``pruner`` (see ``make_pruner``): every non-depthwise conv whose output channels reach
    no reshape, head output or channel slice (convs tied by a residual add are all listed; naming
    one prunes them together). Without: every non-depthwise conv but the head's output convs (a
    quick, slightly larger list).
    """
    convs = conv_layers(model)
    if pruner is None:
        return [k for k, c in convs.items()
                if c._groups == 1 and not k.startswith("yolo_head.yolo_output")]
    return [k for k, path in _paths(model).items() if convs[k]._groups == 1 and pruner.slots(path)]


def apply_ratios(model: nn.Layer, pruner: ChannelGraph, ratios: Dict[str, float]) -> PrunePlan:
    """Prune ``{stable name: ratio}`` in place with an existing pruner; returns the plan
    (``plan.restore(model)`` undoes it)."""
    for name, ratio in ratios.items():
        if not 0.0 <= float(ratio) < 1.0:
            raise ConfigError(f"pruned_ratios: {ratio} for {name!r} must be in [0, 1)")
    paths, allowed = _paths(model), set(prunable_layers(model, pruner))
    todo = []
    for name, ratio in ratios.items():
        key = resolve_layer(model, name)
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=5, cutoff=0.4)
            raise ConfigError(
                f"pruned_params: {key!r} cannot be pruned (a depthwise conv, a head output, or its "
                f"channels reach a reshape or a channel slice); prunable layers near it: "
                f"{close or sorted(allowed)[:8]}")
        if float(ratio) > 0:
            todo.append((paths[key], float(ratio)))
    return pruner.prune(todo)


@register
class Pruner:
    """PaddleDetection's ``Pruner`` slim component with stable layer names.

    ``Pruner(criterion, pruned_params, pruned_ratios)``; ``pruner(model, image_shape)`` prunes
    ``model`` in place and returns it; ``report`` holds FLOPs and parameters before / after.
    """

    def __init__(self, criterion: str = "fpgm", pruned_params: Sequence[str] = (),
                 pruned_ratios: Sequence[float] = (), print_params: bool = False):
        if criterion not in CRITERIA:
            raise ConfigError(f"Pruner.criterion {criterion!r}: expected one of {list(CRITERIA)}")
        if len(pruned_params) != len(pruned_ratios):
            raise ConfigError(f"Pruner: {len(pruned_params)} pruned_params but {len(pruned_ratios)} "
                              "pruned_ratios; give one ratio per layer")
        self.criterion = criterion
        self.pruned_params = list(pruned_params)
        self.pruned_ratios = [float(r) for r in pruned_ratios]
        self.print_params = print_params
        self.report: Dict[str, float] = {}

    @property
    def ratios(self) -> Dict[str, float]:
        return dict(zip(self.pruned_params, self.pruned_ratios))

    def __call__(self, model: nn.Layer, image_shape: Sequence[int] = (3, 640, 640), pruner=None):
        for name in self.pruned_params:  # fail on a bad name before the slow graph trace
            resolve_layer(model, name)
        flops0, params0 = count_flops(model, image_shape), count_params(model)
        pruner = pruner or make_pruner(model, self.criterion, image_shape)
        if self.print_params:
            for name in prunable_layers(model, pruner):
                logger.info(f"prunable: {name} {conv_layers(model)[name].weight.shape}")
        apply_ratios(model, pruner, self.ratios)
        flops1, params1 = count_flops(model, image_shape), count_params(model)
        self.report = {"flops_before": flops0, "flops_after": flops1, "params_before": params0,
                       "params_after": params1, "flops_cut": 1 - flops1 / flops0}
        logger.info(f"pruned {len(self.pruned_params)} layers ({self.criterion}): FLOPs "
                    f"{flops0 / 1e6:.1f}M -> {flops1 / 1e6:.1f}M (-{self.report['flops_cut']:.1%}), "
                    f"params {params0 / 1e6:.3f}M -> {params1 / 1e6:.3f}M")
        return model


def sensitivity(model: nn.Layer, pruner, layers: Sequence[str], eval_fn: Callable[[nn.Layer], float],
                ratios: Sequence[float] = (0.25, 0.5, 0.75),
                image_shape: Sequence[int] = (3, 640, 640)) -> Dict[str, Dict[float, Dict[str, float]]]:
    """Prune one layer at a time, evaluate, restore.

    Returns ``{layer: {ratio: {'metric', 'loss', 'flops_cut'}}}`` where ``loss`` is the metric
    drop (baseline − pruned, same units as ``eval_fn``, e.g. mAP) and ``flops_cut`` the fraction
    of the model's FLOPs removed. ``table['_baseline']`` holds the unpruned metric.
    """
    base_flops = count_flops(model, image_shape)
    baseline = float(eval_fn(model))
    table: Dict = {"_baseline": baseline}
    for layer in layers:
        key = resolve_layer(model, layer)
        row = table.setdefault(key, {})
        for ratio in ratios:
            plan = apply_ratios(model, pruner, {key: ratio})
            try:
                metric = float(eval_fn(model))
                cut = 1 - count_flops(model, image_shape) / base_flops
            finally:
                plan.restore(model)
            row[float(ratio)] = {"metric": metric, "loss": baseline - metric, "flops_cut": cut}
            logger.info(f"sensitivity {key} @ {ratio:.2f}: metric {metric:.4f} "
                        f"(loss {baseline - metric:+.4f}), FLOPs -{cut:.1%}")
    return table


def format_sensitivity(table: Dict) -> str:
    """The sensitivity table as text: one row per layer, ``loss / FLOPs cut`` per ratio."""
    layers = [k for k in table if not k.startswith("_")]
    ratios = sorted({r for k in layers for r in table[k]})
    width = max([len(k) for k in layers] + [5])
    lines = [f"metric loss (baseline {table['_baseline']:.4f}) / FLOPs cut, per pruned ratio",
             f"{'layer':<{width}}  " + "  ".join(f"{r:>16.2f}" for r in ratios)]
    for k in layers:
        cells = [f"{table[k][r]['loss']:+8.4f} / {table[k][r]['flops_cut']:5.1%}" if r in table[k]
                 else " " * 16 for r in ratios]
        lines.append(f"{k:<{width}}  " + "  ".join(f"{c:>16}" for c in cells))
    return "\n".join(lines)


def propose_ratios(table: Dict, target_cut: float,
                   measure: Optional[Callable[[Dict[str, float]], float]] = None,
                   max_ratio: float = 0.9) -> Tuple[Dict[str, float], float]:
    """Ratios that remove ``target_cut`` of the FLOPs at the least estimated metric loss.

    Greedy over the sensitivity grid: repeatedly raise the layer whose next ratio costs the least
    metric loss per FLOP removed, until the estimated cut (sum of single-layer cuts) reaches the
    target; ``measure(ratios) -> actual cut`` then checks it and the search continues while short
    (single-layer cuts overlap when two pruned layers meet). Returns (ratios, cut).
    """
    layers = [k for k in table if not k.startswith("_")]
    grid = {k: [0.0] + sorted(r for r in table[k] if r <= max_ratio) for k in layers}
    level = {k: 0 for k in layers}

    def stat(k, i, what):
        return 0.0 if i == 0 else table[k][grid[k][i]][what]

    def estimate():
        return sum(stat(k, level[k], "flops_cut") for k in layers)

    cut = 0.0
    while True:
        ratios = {k: grid[k][level[k]] for k in layers if level[k] > 0}
        if estimate() >= target_cut:
            cut = measure(ratios) if measure else estimate()
            if cut >= target_cut:
                return ratios, cut
        moves = []
        for k in layers:
            i = level[k]
            if i + 1 < len(grid[k]):
                gain = stat(k, i + 1, "flops_cut") - stat(k, i, "flops_cut")
                loss = max(stat(k, i + 1, "loss"), 0.0) - max(stat(k, i, "loss"), 0.0)
                moves.append(((loss + 1e-4) / max(gain, 1e-9), k))
        if not moves:
            logger.warning(f"FLOPs target -{target_cut:.0%} not reachable with these layers and "
                           f"ratios; best found -{cut:.1%}")
            return ratios, (measure(ratios) if measure else estimate())
        level[min(moves)[1]] += 1


def load_pruned_weights(model: nn.Layer, state: Dict[str, paddle.Tensor]) -> nn.Layer:
    """Shrink ``model``'s tensors to the shapes in a pruned state_dict and load it.

    Only shapes change (and a depthwise conv's ``groups``), so no pruner or plan is needed: the
    checkpoint itself says which layers were pruned and by how much.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ConfigError(f"pruned checkpoint lacks {len(missing)} tensors of this model, e.g. "
                          f"{missing[:5]}; was it saved from this config?")
    for name, layer in model.named_sublayers():
        if isinstance(layer, nn.Conv2D) and layer._groups > 1 and layer.weight.shape[1] == 1:
            layer._groups = int(state[f"{name}.weight"].shape[0])  # depthwise stays depthwise
    place = paddle.framework._current_expected_place()
    for key, tensor in own.items():
        value = np.asarray(state[key]).astype(tensor.numpy().dtype)
        tensor.value().get_tensor().set(value, place)
    return model

"""Value checks, once, in the config layer: a wrong type or an out-of-range number fails when the
config loads (or a component is built), naming the file, the key, the value and what is allowed.

Two sources of rules:
- ``SETTINGS`` below: the top-level and reader keys the engine reads (``epoch``, ``batch_size``...);
- a component's constructor annotations (``int``, ``float``, ``bool``, ``str`` and ``Optional`` of
  them), checked by ``registry.create``; richer annotations are left to the constructor.
"""
import inspect
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Union

from .errors import ConfigError


@dataclass(frozen=True)
class Number:
    """An int (``integer``) or a real number, with an optional inclusive lower and upper bound;
    ``above``: an exclusive lower bound (a learning rate must be > 0)."""

    integer: bool = True
    low: Optional[float] = None
    high: Optional[float] = None
    above: Optional[float] = None
    optional: bool = False

    def problem(self, value: Any) -> Optional[str]:
        """Why ``value`` is not allowed, or None when it is."""
        if value is None and self.optional:
            return None
        kind = "an integer" if self.integer else "a number"
        ok_type = (isinstance(value, int) if self.integer else isinstance(value, (int, float)))
        if isinstance(value, bool) or not ok_type or (not self.integer and math.isnan(value)):
            return f"expected {kind}{self._range()}, got {value!r}"
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high) or \
                (self.above is not None and value <= self.above):
            return f"{value!r} is out of range: expected {kind}{self._range()}"
        return None

    def _range(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.low is not None:
            parts.append(f">= {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        return f" {' and '.join(parts)}" if parts else ""


POSITIVE, NON_NEGATIVE = Number(low=1), Number(low=0)
# dotted key -> rule, for the keys the engine reads itself (components are checked by annotation)
SETTINGS: Dict[str, Number] = {
    "epoch": POSITIVE, "snapshot_epoch": POSITIVE, "log_iter": POSITIVE, "num_classes": POSITIVE,
    "seed": Number(optional=True), "worker_num": Number(low=0, optional=True),
    "max_iters": Number(low=1, optional=True), "bn_recalibrate_batches": NON_NEGATIVE,
    "freeze_bn_epoch": Number(low=0, optional=True),
    "depthwise_matmul_max_pixels": Number(low=0),
    "ema_decay": Number(integer=False, low=0, high=1), "reference_batch_size": POSITIVE,
    "eval_score_threshold": Number(integer=False, low=0, high=1),
    "infer_draw_threshold": Number(integer=False, low=0, high=1),
    "eval_nms_top_k": Number(low=1, optional=True),
    "LearningRate.base_lr": Number(integer=False, above=0),
    "TrainReader.batch_size": POSITIVE, "EvalReader.batch_size": POSITIVE, "TestReader.batch_size": POSITIVE,
    "OptimizerBuilder.clip_grad_by_norm": Number(integer=False, above=0, optional=True),
}


def check_settings(cfg: Dict[str, Any], where: Callable[[str], str]) -> None:
    """``ConfigError`` for the first key of ``SETTINGS`` present in ``cfg`` with a bad value."""
    for dotted, rule in SETTINGS.items():
        node: Any = cfg
        for key in dotted.split("."):
            node = node.get(key, _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING:
            continue
        problem = rule.problem(node)
        if problem:
            source = where(dotted)
            fix = (f"fix the -o {dotted}=... override" if source == "<overrides>" else
                   f"fix it in that file or pass -o {dotted}=<value>")
            raise ConfigError(f"{source}: {dotted}: {problem}; {fix}")


_MISSING = object()
_SIMPLE = {int: Number(), float: Number(integer=False)}


def _rule(annotation) -> Optional[Callable[[Any], Optional[str]]]:
    """A checker for the simple annotations (int, float, bool, str, Optional[...] of them)."""
    optional = False
    if typing.get_origin(annotation) is Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1 or len(typing.get_args(annotation)) != 2:
            return None
        annotation, optional = args[0], True
    if annotation in _SIMPLE:
        number = Number(integer=annotation is int, optional=optional)
        return number.problem
    if annotation in (bool, str):
        def check(value, kind=annotation):
            if value is None and optional:
                return None
            return None if isinstance(value, kind) else \
                f"expected {'true or false' if kind is bool else 'a string'}, got {value!r}"
        return check
    return None


def check_arguments(cls, kwargs: Dict[str, Any], where: str) -> None:
    """``ConfigError`` for the first YAML argument whose value does not fit ``cls.__init__``'s
    simple annotation (``int``, ``float``, ``bool``, ``str``, ``Optional`` of one of them)."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001  (unresolvable forward references: nothing to check against)
        return
    params = inspect.signature(cls.__init__).parameters
    for key, value in kwargs.items():
        if key not in hints or key not in params:
            continue
        default = params[key].default
        if value is None and default is None:
            continue
        check = _rule(hints[key])
        problem = check(value) if check else None
        if problem:
            raise ConfigError(f"{where}: {cls.__name__}.{key}: {problem}")

"""YAML configs in PaddleDetection's layout: ``_BASE_`` inheritance, ``-o`` overrides, key checks.

A config is a plain nested dict.  ``_BASE_`` lists files relative to the including file; they are
merged in order, the including file last, nested dicts deep-merged.  A YAML tag such as
``!COCODataSet {...}`` or ``!PiecewiseDecay {...}`` becomes ``{'name': 'COCODataSet', ...}``, so
tagged and ``name:`` forms are the same thing.  ``Config.source(key)`` tells which file set a key,
for error messages.
"""
import difflib
import os
from typing import Any, Dict, Iterable, List, Optional, Union

import yaml

from .errors import ConfigError

# PaddleDetection's global keys; a top-level key outside these and the registered component names
# is reported as a probable typo.
GLOBAL_KEYS = {
    "architecture", "num_classes", "norm_type", "use_gpu", "use_xpu", "use_npu", "use_mlu",
    "log_iter", "save_dir", "snapshot_epoch", "epoch", "weights", "pretrain_weights",
    "metric", "map_type", "use_ema", "ema_decay", "ema_decay_type", "ema_filter_no_grad",
    "cycle_epoch", "master_grad", "amp_level", "print_flops", "print_params", "find_unused_parameters",
    "TrainDataset", "EvalDataset", "TestDataset", "TrainReader", "EvalReader",
    "TestReader", "LearningRate", "OptimizerBuilder", "export", "worker_num", "seed", "max_iters",
    "auto_scale_lr", "reference_batch_size", "eval_max_dets", "eval_score_threshold", "slim",
    "filename", "use_vdl", "vdl_log_dir", "classwise", "eval", "resume", "amp", "fleet",
    "nan_check", "infer_draw_threshold", "bn_recalibrate_batches", "eval_nms_top_k",
    "pruner", "distill_loss", "slim_method",  # slim configs (PaddleDetection's keys)
}


class Config(dict):
    """A dict with attribute access for top-level keys and a record of which file set each key."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def source(self, key: str) -> str:
        return self.get("_sources", {}).get(key.split(".")[0], "<overrides>")


class _Loader(yaml.SafeLoader):
    pass


def _tagged(loader: yaml.Loader, suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.ScalarNode) and loader.construct_scalar(node) in ("", None):
        value = {}
    else:
        raise yaml.constructor.ConstructorError(
            None, None, f"tag !{suffix} must be followed by a mapping", node.start_mark)
    return {"name": suffix, **value}


_Loader.add_multi_constructor("!", _tagged)


def _read_yaml(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def merge(base: Dict[str, Any], other: Dict[str, Any]) -> Dict[str, Any]:
    """Deep-merge ``other`` into ``base`` (in place) and return ``base``.

    A mapping whose ``name`` (a tagged component) or ``type`` (an optimizer) differs replaces the
    old one wholesale: ``TrainDataset: !VOCDataSet`` must not inherit COCO keys, nor ``type: AdamW``
    Momentum's ``momentum``.
    """
    for key, value in other.items():
        old = base.get(key)
        if isinstance(old, dict) and isinstance(value, dict) and \
                all(old.get(k, value.get(k)) == value.get(k, old.get(k)) for k in ("name", "type")):
            merge(old, value)
        else:
            base[key] = value
    return base


def _load_tree(path: str, sources: Dict[str, str], stack: List[str]) -> Dict[str, Any]:
    path = os.path.abspath(path)
    if path in stack:
        raise ConfigError(f"{path}: _BASE_ cycle: {' -> '.join(stack + [path])}")
    data = _read_yaml(path)
    bases = data.pop("_BASE_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: Dict[str, Any] = {}
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), base)
        if not os.path.isfile(base_path):
            raise ConfigError(f"{path}: _BASE_ entry {base!r} not found (looked at {base_path})")
        merge(merged, _load_tree(base_path, sources, stack + [path]))
    for key in data:
        sources[key] = path
    return merge(merged, data)


def parse_value(text: str) -> Any:
    """An override value, typed as YAML would type it (``3`` int, ``[3,320,320]`` list, ``True``)."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Dict[str, Any], overrides: Union[None, Dict[str, Any], Iterable[str]]) -> None:
    """Set dotted keys: ``{'TrainReader.batch_size': 8}`` or ``['TrainReader.batch_size=8']``."""
    if not overrides:
        return
    if not isinstance(overrides, dict):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like key=value, e.g. epoch=10")
            key, value = item.split("=", 1)
            pairs[key.strip()] = parse_value(value)
        overrides = pairs
    sources = cfg.setdefault("_sources", {})
    for dotted, value in overrides.items():
        keys = dotted.split(".")
        node = cfg
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: {'.'.join(keys[:depth + 1])} is "
                                  f"{type(child).__name__}, not a mapping")
            node = child
        node[keys[-1]] = value
        sources.setdefault(keys[0], "<overrides>")


def check_top_level(cfg: Dict[str, Any]) -> None:
    """Reject top-level keys that are neither global keys nor registered components."""
    from .registry import registered

    known = GLOBAL_KEYS | set(registered())
    for key in cfg:
        if key.startswith("_") or key in known:
            continue
        hint = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        if hint:  # an unknown key close to a known one is a typo; others may be user extras
            raise ConfigError(f"{cfg.get('_sources', {}).get(key, '<config>')}: unknown key {key!r}; "
                              f"did you mean {hint}?")


def load_config(path: str, overrides: Union[None, Dict[str, Any], Iterable[str]] = None) -> Config:
    """Load ``path`` with its ``_BASE_`` chain, apply overrides, check keys; return a ``Config``."""
    sources: Dict[str, str] = {}
    cfg = Config(_load_tree(path, sources, []))
    cfg["_sources"] = sources
    cfg["filename"] = os.path.splitext(os.path.basename(path))[0]
    cfg["_path"] = os.path.abspath(path)
    apply_overrides(cfg, overrides)
    _import_components()
    check_top_level(cfg)
    return cfg


def _import_components() -> None:
    """Import the packages whose classes register themselves, so names resolve."""
    import importlib

    for module in ("ppdet_lite.data", "ppdet_lite.modeling", "ppdet_lite.engine"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:  # a real missing dependency, not a package still being written
                raise


def section(cfg: Dict[str, Any], key: str, required: bool = True) -> Optional[Dict[str, Any]]:
    """``cfg[key]`` as a dict; a ConfigError naming the config file if it is missing."""
    value = cfg.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{cfg.get('_path', '<config>')}: missing section {key!r}")
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{cfg.source(key) if isinstance(cfg, Config) else '<config>'}: "
                          f"{key} must be a mapping, got {value!r}")
    return value

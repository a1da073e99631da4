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
from .unimplemented import GLOBAL, READER, check_not_implemented
from .values import check_settings

# The top-level keys something reads (PaddleDetection's names, plus a few of ours); a top-level
# key must be one of these, a registered component's section, a PaddleDetection key accepted at
# its no-op value (``unimplemented.GLOBAL``), or start with ``_`` (a YAML anchor holder).
GLOBAL_KEYS = {
    "architecture", "num_classes", "norm_type", "data_format", "use_gpu",
    "log_iter", "save_dir", "snapshot_epoch", "epoch", "weights", "pretrain_weights",
    "metric", "map_type", "use_ema", "ema_decay", "ema_decay_type",
    "cycle_epoch", "master_grad", "amp_level", "print_flops", "print_params", "find_unused_parameters",
    "TrainDataset", "EvalDataset", "TestDataset", "TrainReader", "EvalReader",
    "TestReader", "LearningRate", "OptimizerBuilder", "export", "worker_num", "seed", "max_iters",
    "auto_scale_lr", "reference_batch_size", "eval_score_threshold", "slim",
    "filename", "use_vdl", "vdl_log_dir", "classwise", "amp", "fleet",
    "output_eval", "bias", "confusion_score_thresh",  # evaluation (tools/eval.py flags set them too)
    "nan_check", "infer_draw_threshold", "bn_recalibrate_batches", "freeze_bn_epoch", "eval_nms_top_k",
    "depthwise_matmul_max_pixels",
    "distill_loss",  # slim configs (PaddleDetection's keys)
}
READER_SECTIONS = ("TrainReader", "EvalReader", "TestReader")
# components always written inline (datasets, transforms, LR schedules): a top-level section
# named after one of them is read by nothing
_INLINE_PACKAGES = ("ppdet_lite.data.", "ppdet_lite.engine.")
# command-line flags that users sometimes write into a config
_FLAGS = {"eval": "--eval", "resume": "-r/--resume"}


class Config(dict):
    """A dict with attribute access for top-level keys and a record of which file set each key."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def source(self, key: str) -> str:
        sources = self.get("_sources", {})
        return sources.get(key) or sources.get(key.split(".")[0], "<overrides>")


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
        raise ConfigError(f"{path}: invalid YAML: {yaml_problem(e)}; fix the syntax there") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def yaml_problem(e: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own text spans several lines)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}" + (f" ({context})" if context else "")


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


def base_paths(path: str) -> List[str]:
    """The files ``path``'s own ``_BASE_`` lists (not their bases), as paths."""
    bases = _read_yaml(path).get("_BASE_", [])
    return [os.path.normpath(os.path.join(os.path.dirname(path), b))
            for b in ([bases] if isinstance(bases, str) else bases)]


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
        sources[dotted] = "<overrides>"  # errors about this key name the override, not a file
        sources.setdefault(keys[0], "<overrides>")


def check_top_level(cfg: Dict[str, Any]) -> None:
    """Reject a top-level key that nothing reads, and a PaddleDetection setting ppdet_lite does not
    implement at a value other than its no-op one (``unimplemented.GLOBAL`` / ``READER``)."""
    from .registry import registered

    sources = cfg.get("_sources", {})

    def where(key: str) -> str:
        return sources.get(key) or sources.get(key.split(".")[0], "<config>")

    components = registered()
    known = GLOBAL_KEYS | set(GLOBAL) | set(components)
    for key in cfg:
        if key in components and components[key].__module__.startswith(_INLINE_PACKAGES):
            raise ConfigError(f"{where(key)}: {key} is configured where it is used (e.g. "
                              f"TrainDataset: !{key} {{...}}, a reader's sample_transforms, "
                              f"LearningRate.schedulers), not as a top-level section; nothing reads "
                              f"the {key!r} section: move its keys there")
        if key in components and cfg[key] is not None and not isinstance(cfg[key], dict):
            raise ConfigError(f"{where(key)}: the {key} section must be a mapping of its arguments "
                              f"(e.g. {key}: {{...}}), got {cfg[key]!r}")
        if key.startswith("_") or key in known:
            continue
        if key in _FLAGS:
            raise ConfigError(f"{where(key)}: {key!r} is a command-line flag of tools/train.py "
                              f"({_FLAGS[key]}), not a config key; remove it")
        hint = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
        raise ConfigError(f"{where(key)}: unknown top-level key {key!r}: nothing reads it; "
                          + (f"did you mean {hint}?" if hint else
                             "remove it, or start its name with '_' if it only holds YAML anchors"))
    check_not_implemented(cfg, GLOBAL, where)
    check_settings(cfg, where)
    for section in READER_SECTIONS:
        if isinstance(cfg.get(section), dict):
            check_not_implemented(cfg[section], READER, f"{where(section)}: {section}")


def load_config(path: str, overrides: Union[None, Dict[str, Any], Iterable[str]] = None) -> Config:
    """Load ``path`` with its ``_BASE_`` chain, apply overrides, check keys; return a ``Config``."""
    sources: Dict[str, str] = {}
    cfg = Config(_load_tree(path, sources, []))
    if not cfg:
        raise ConfigError(f"{path}: the config is empty; give a model config, e.g. configs/ppyolo_tiny_shapes.yml, "
                          "or a file whose _BASE_ lists one")
    cfg["_sources"] = sources
    if "filename" in cfg:  # it would be overwritten just below
        raise ConfigError(f"{sources['filename']}: filename is the config file's own name (outputs go "
                          "to save_dir/<filename>); remove it, or pass -o filename=NAME")
    cfg["filename"] = os.path.splitext(os.path.basename(path))[0]
    cfg["_path"] = os.path.abspath(path)
    apply_overrides(cfg, overrides)
    _import_components(slim="slim" in cfg)
    check_top_level(cfg)
    return cfg


def _import_components(slim: bool = False) -> None:
    """Import the packages whose classes register themselves, so names resolve (``slim``: also
    the compression components, Pruner / QAT / PTQ / DistillYOLOv3Loss, for a slim config)."""
    import importlib

    modules = ("ppdet_lite.data", "ppdet_lite.modeling", "ppdet_lite.engine")
    for module in modules + (("ppdet_lite.slim",) if slim else ()):
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

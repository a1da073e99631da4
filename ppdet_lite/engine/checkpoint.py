"""Checkpoints in PaddleDetection's file layout, written atomically, and weight loading by key.

A checkpoint ``<dir>/<name>`` is up to three files, as PaddleDetection writes them:
``.pdparams`` (the weights to evaluate: EMA weights when EMA is on), ``.pdema`` (the raw training
weights when EMA is on) and ``.pdopt`` (optimizer state plus ``last_epoch`` and our trainer state).
Every file is written to a temporary name and renamed, so a kill during a save leaves the previous
checkpoint whole.
"""
import os
from typing import Any, Dict, Optional

import paddle

from ..core.errors import ConfigError
from ..utils.download import download, is_url
from ..utils.logger import get_logger

logger = get_logger(__name__)

SUFFIXES = (".pdparams", ".pdema", ".pdopt")


def strip_suffix(path: str) -> str:
    for suffix in SUFFIXES:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def resolve(path_or_url: str) -> str:
    """Local ``.pdparams`` path for a path (with or without the suffix) or URL."""
    path = download(path_or_url) if is_url(path_or_url) else path_or_url
    path = strip_suffix(path) + ".pdparams"
    if not os.path.isfile(path):
        raise ConfigError(f"weights file not found: {path}. Set -o weights=<path to .pdparams> "
                          f"(or pretrain_weights=...) to a file that exists.")
    return path


def atomic_save(obj: Any, path: str) -> None:
    """``paddle.save`` to ``path`` through a temporary file in the same directory."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        paddle.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(save_dir: str, name: str, weights: Dict[str, Any], raw_weights=None,
                    optimizer_state: Optional[Dict[str, Any]] = None) -> str:
    """Write ``<save_dir>/<name>.pdparams`` (+ ``.pdema``, ``.pdopt``); returns the path prefix."""
    os.makedirs(save_dir, exist_ok=True)
    prefix = os.path.join(save_dir, name)
    # .pdparams last: its presence marks a complete checkpoint for readers that look for it.
    if optimizer_state is not None:
        atomic_save(optimizer_state, prefix + ".pdopt")
    if raw_weights is not None:
        atomic_save(raw_weights, prefix + ".pdema")
    atomic_save(weights, prefix + ".pdparams")
    return prefix


def _head_output_key(key: str) -> bool:
    return key.startswith("yolo_head.yolo_output")


def match_state(model_state: Dict[str, Any], ckpt: Dict[str, Any], partial: bool):
    """Pair checkpoint tensors with model keys.

    Returns ``(matched, report)``. A backbone-only checkpoint (ImageNet pretraining, keys without
    the ``backbone.`` prefix) is matched under that prefix. Head output convs whose class dimension
    differs (fine-tuning to another ``num_classes``) are left out and reported.
    """
    if not any(k in model_state for k in ckpt) and any("backbone." + k in model_state for k in ckpt):
        ckpt = {"backbone." + k: v for k, v in ckpt.items()}
    matched, mismatched, head_skipped = {}, [], []
    for key, value in ckpt.items():
        if key not in model_state:
            continue
        want = list(model_state[key].shape)
        got = list(value.shape)
        if want == got:
            matched[key] = value
        elif _head_output_key(key) and want[1:] == got[1:]:
            head_skipped.append(f"{key} {got} -> {want}")
        else:
            mismatched.append(f"{key}: checkpoint {got}, model {want}")
    report = {
        "missing": sorted(k for k in model_state if k not in matched and k not in
                          {s.split(" ")[0] for s in head_skipped}),
        "unexpected": sorted(k for k in ckpt if k not in model_state),
        "mismatched": mismatched,
        "head_skipped": head_skipped,
    }
    return matched, report


def load_weights(model: paddle.nn.Layer, path_or_url: str, partial: bool = False) -> Dict[str, list]:
    """Load weights into ``model``; every key that does not load is reported by name and shape.

    ``partial=False`` (``weights``, resume): any missing, unexpected or mismatched key raises,
    except the head's output convs when only ``num_classes`` differs, which keep their fresh
    initialisation with a warning. ``partial=True`` (``pretrain_weights``): load what matches and
    log what did not.
    """
    path = resolve(path_or_url)
    ckpt = paddle.load(path)
    model_state = model.state_dict()
    matched, report = match_state(model_state, ckpt, partial)
    if not partial and (report["missing"] or report["unexpected"] or report["mismatched"]):
        lines = [f"{path} does not fit the model:"]
        for kind in ("missing", "unexpected", "mismatched"):
            if report[kind]:
                lines.append(f"  {kind} ({len(report[kind])}): " + ", ".join(report[kind][:20]) +
                             (" ..." if len(report[kind]) > 20 else ""))
        lines.append("  Check that the config matches the checkpoint's model, or load it as "
                     "pretrain_weights to keep only the matching part.")
        raise ConfigError("\n".join(lines))
    if report["head_skipped"]:
        logger.warning("num_classes differs from the checkpoint: head output convs keep their fresh "
                       "initialisation: " + "; ".join(report["head_skipped"]))
    if partial and (report["missing"] or report["unexpected"] or report["mismatched"]):
        logger.info(f"partial load from {path}: {len(matched)} tensors loaded, "
                    f"{len(report['missing'])} model tensors not in the checkpoint "
                    f"(e.g. {report['missing'][:3]}), {len(report['unexpected'])} checkpoint tensors "
                    f"unused (e.g. {report['unexpected'][:3]}), mismatched: {report['mismatched'][:5]}")
    model.set_state_dict({k: paddle.to_tensor(v).astype(model_state[k].dtype) for k, v in matched.items()})
    logger.info(f"loaded {len(matched)}/{len(model_state)} tensors from {path}")
    return report


def _rename_optimizer_keys(state: Dict[str, Any], mapping: Dict[str, str]) -> Dict[str, Any]:
    """Rename accumulator keys ``<param>_<accumulator>`` whose ``<param>`` is in ``mapping``."""
    out = {}
    for key, value in state.items():
        new = key
        for i, ch in enumerate(key):
            if ch == "_" and key[:i] in mapping:
                new = mapping[key[:i]] + key[i:]
                break
        out[new] = value
    return out


def optimizer_state_to_structured(state: Dict[str, Any], model: paddle.nn.Layer) -> Dict[str, Any]:
    """Optimizer state keyed by structured parameter names (``neck.tip.conv.weight_velocity_0``).

    Paddle keys accumulators by generated names (``conv2d_56.w_0``) that change with the build
    order, so a checkpoint keyed that way only resumes into an identically built process."""
    return _rename_optimizer_keys(state, {p.name: n for n, p in model.named_parameters()})


def optimizer_state_from_structured(state: Dict[str, Any], model: paddle.nn.Layer) -> Dict[str, Any]:
    return _rename_optimizer_keys(state, {n: p.name for n, p in model.named_parameters()})


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Read a training checkpoint for ``--resume``: weights, raw (EMA) weights, optimizer state."""
    params = resolve(path)
    prefix = strip_suffix(params)
    state = {"weights": paddle.load(params), "raw_weights": None, "optimizer": None}
    if os.path.isfile(prefix + ".pdema"):
        state["raw_weights"] = paddle.load(prefix + ".pdema")
    if os.path.isfile(prefix + ".pdopt"):
        state["optimizer"] = paddle.load(prefix + ".pdopt")
    else:
        raise ConfigError(f"cannot resume from {prefix}: {prefix}.pdopt is missing (it holds the "
                          f"optimizer, schedule and epoch). Use -o weights={prefix} to only load weights.")
    return state

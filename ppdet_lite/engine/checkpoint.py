"""Checkpoints in PaddleDetection's file layout, written as one consistent set, and weight loading by key.

A checkpoint ``<dir>/<name>`` is up to three files, as PaddleDetection writes them:
``.pdparams`` (the weights to evaluate: EMA weights when EMA is on), ``.pdema`` (the raw training
weights when EMA is on) and ``.pdopt`` (optimizer state plus ``last_epoch`` and our trainer state),
plus ``<name>.ckpt.json``, the manifest: the save id and each file's size and SHA-256.

A save writes every file under a temporary name (fsynced), then the new manifest under a temporary
name, renames the files into place and the manifest last. Whatever moment a crash hits, the files on
disk match the manifest, or the pending one, or neither: a mixed set, which a reader refuses
(``ConfigError``) instead of resuming epoch 5's optimizer with epoch 3's weights. A checkpoint without
a manifest (PaddleDetection's) loads as it is. Files are read with ``utils.safe_pickle``: a file that
would run code when unpickled is refused.
"""
import glob
import hashlib
import json
import os
import time
from typing import Any, Dict, Optional

import paddle

from ..core.errors import ConfigError
from ..utils.download import download, is_url
from ..utils.logger import get_logger
from ..utils.safe_pickle import load_checkpoint_file

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


MANIFEST = ".ckpt.json"
# paddle.save bookkeeping entries of a state dict, not tensors
_PADDLE_META = ("StructuredToParameterName@@", "UnpackBigParamInfor@@")


def _fsync_write(path: str, write) -> None:
    with open(path, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _digest(path: str) -> Dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"size": os.path.getsize(path), "sha256": h.hexdigest()}


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(save_dir: str, name: str, weights: Dict[str, Any], raw_weights=None,
                    optimizer_state: Optional[Dict[str, Any]] = None) -> str:
    """Write ``<save_dir>/<name>.pdparams`` (+ ``.pdema``, ``.pdopt``) and its manifest as one set;
    returns the path prefix. Temporary files of an interrupted earlier save are removed first."""
    os.makedirs(save_dir, exist_ok=True)
    prefix = os.path.join(save_dir, name)
    for stale in glob.glob(glob.escape(prefix) + ".*tmp-*"):
        os.remove(stale)
    tag = f"tmp-{os.getpid()}"
    parts = [(".pdopt", optimizer_state), (".pdema", raw_weights), (".pdparams", weights)]
    parts = [(suffix, obj) for suffix, obj in parts if obj is not None]
    try:
        _write_set(prefix, parts, tag, save_dir)
    except OSError as e:  # a full disk, a lost mount: the set on disk is still the previous save's
        raise OSError(e.errno, f"{e.strerror}: cannot write checkpoint {prefix} (the files of its previous save, "
                               "if any, are unchanged); free space there or pass -o save_dir=<another directory>",
                      e.filename) from None
    finally:
        for leftover in glob.glob(glob.escape(prefix) + f".*{tag}"):
            os.remove(leftover)
    return prefix


def _write_set(prefix: str, parts, tag: str, save_dir: str) -> None:
    """Temporary files (fsynced), the pending manifest, the renames, the manifest last."""
    for suffix, obj in parts:
        tmp = f"{prefix}{suffix}.{tag}"
        paddle.save(obj, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
    manifest = {"save_id": f"{time.time_ns()}-{os.getpid()}",
                "files": {suffix: _digest(f"{prefix}{suffix}.{tag}") for suffix, _ in parts}}
    pending = f"{prefix}{MANIFEST}.{tag}"
    _fsync_write(pending, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    for suffix, _ in parts:  # .pdparams last, then the manifest that commits the set
        os.replace(f"{prefix}{suffix}.{tag}", prefix + suffix)
    for suffix in (".pdopt", ".pdema"):  # a file of the previous set this save has no part for
        if suffix not in manifest["files"] and os.path.exists(prefix + suffix):
            os.remove(prefix + suffix)
    os.replace(pending, prefix + MANIFEST)
    _fsync_dir(save_dir)


def _matches(prefix: str, manifest: Dict[str, Any], suffixes) -> bool:
    files = manifest.get("files", {})
    return all(s in files and os.path.isfile(prefix + s) and _digest(prefix + s) == files[s] for s in suffixes)


def verify_checkpoint(prefix: str, suffixes=(".pdparams",)) -> None:
    """``ConfigError`` unless the ``suffixes`` files of ``prefix`` belong to one save: the one its
    manifest names, or the pending one an interrupted save left (whose renames all happened).
    Without a manifest there is nothing to check (PaddleDetection's checkpoints)."""
    path = prefix + MANIFEST
    if not os.path.isfile(path):
        return
    candidates = [path] + sorted(glob.glob(glob.escape(path) + ".tmp-*"))
    for candidate in candidates:
        try:
            with open(candidate) as f:
                manifest = json.load(f)
        except (OSError, ValueError):
            continue
        if _matches(prefix, manifest, suffixes):
            return
    present = ", ".join(s for s in (".pdparams", ".pdema", ".pdopt") if os.path.isfile(prefix + s))
    raise ConfigError(f"{prefix}: the checkpoint files ({present}) do not all come from one save (a save was "
                      f"interrupted between its renames, or a file was replaced by hand); refusing a mixed set. "
                      f"Use an earlier checkpoint in {os.path.dirname(prefix) or '.'} (epoch numbers), or, to "
                      f"start from these weights anyway, delete {path}.")


def read_state(path: str) -> Dict[str, Any]:
    """A ``paddle.save`` state dict read safely (numpy arrays), without paddle's bookkeeping keys."""
    return {k: v for k, v in load_checkpoint_file(path).items() if k not in _PADDLE_META}


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
    verify_checkpoint(strip_suffix(path))
    ckpt = read_state(path)
    model_state = model.state_dict()
    matched, report = match_state(model_state, ckpt, partial)
    if not partial and (report["missing"] or report["unexpected"] or report["mismatched"]):
        parts = [f"{kind} ({len(report[kind])}): " + ", ".join(report[kind][:5]) +
                 (" ..." if len(report[kind]) > 5 else "")
                 for kind in ("missing", "unexpected", "mismatched") if report[kind]]
        raise ConfigError(f"{path} does not fit the model: {'; '.join(parts)}. Check that the config matches "
                          "the checkpoint's model, or load it as pretrain_weights to keep only the matching part.")
    if partial and not matched and model_state:
        raise ConfigError(f"{path}: none of its {len(ckpt)} tensors fits the model ({len(report['mismatched'])} "
                          f"of another shape, e.g. {report['mismatched'][:2]}; {len(report['unexpected'])} of "
                          f"other names, e.g. {report['unexpected'][:2]}): it is another model's checkpoint. "
                          "Check -c, or set pretrain_weights to this model's weights (or '' to train from scratch).")
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
    """Read a training checkpoint for ``--resume``: weights, raw (EMA) weights, optimizer state,
    all from one save (else ``ConfigError``)."""
    params = resolve(path)
    prefix = strip_suffix(params)
    if not os.path.isfile(prefix + ".pdopt"):
        raise ConfigError(f"cannot resume from {prefix}: {prefix}.pdopt is missing (it holds the "
                          f"optimizer, schedule and epoch). Use -o weights={prefix} to only load weights.")
    has_raw = os.path.isfile(prefix + ".pdema")
    verify_checkpoint(prefix, (".pdparams", ".pdopt") + ((".pdema",) if has_raw else ()))
    return {"weights": read_state(params), "raw_weights": read_state(prefix + ".pdema") if has_raw else None,
            "optimizer": load_checkpoint_file(prefix + ".pdopt")}

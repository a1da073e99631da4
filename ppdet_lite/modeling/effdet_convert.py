"""effdet / timm EfficientDet state_dict -> ours (``EfficientDet`` built from
configs/efficientdet_d*.yml). Our sublayer names mirror effdet's, so the mapping is:

    backbone.*  -> backbone.*        (timm tf_efficientnet features)
    fpn.*       -> neck.*
    class_net.* -> head.class_net.*,  box_net.* -> head.box_net.*
    BN running_mean / running_var -> _mean / _variance; num_batches_tracked dropped

Checkpoint wrappers are unwrapped: {'state_dict' | 'state_dict_ema' | 'model': {...}} and the
'model.' (DetBenchTrain) / 'module.' (DDP, EMA) prefixes. Layouts (OIHW) are the same.
"""
import os
from typing import Dict, Mapping

import numpy as np

__all__ = ["convert_effdet_state_dict", "unwrap_checkpoint", "read_effdet_checkpoint",
           "convert_effdet_checkpoint"]

_PREFIXES = (("backbone.", "backbone."), ("fpn.", "neck."), ("class_net.", "head.class_net."),
             ("box_net.", "head.box_net."))


def unwrap_checkpoint(ckpt: Mapping) -> Dict[str, np.ndarray]:
    """The bare state_dict of an effdet checkpoint (values as float32 numpy arrays)."""
    for key in ("state_dict_ema", "state_dict", "model"):
        if key in ckpt and isinstance(ckpt[key], Mapping):
            ckpt = ckpt[key]
            break
    out = {}
    for name, value in ckpt.items():
        for wrapper in ("module.", "model."):
            if name.startswith(wrapper):
                name = name[len(wrapper):]
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        out[name] = arr
    return out


def _our_name(name: str) -> str:
    for theirs, ours in _PREFIXES:
        if name.startswith(theirs):
            name = ours + name[len(theirs):]
            break
    else:
        raise KeyError(name)
    if name.endswith(".running_mean"):
        name = name[:-len("running_mean")] + "_mean"
    elif name.endswith(".running_var"):
        name = name[:-len("running_var")] + "_variance"
    return name


def convert_effdet_state_dict(state: Mapping, model) -> Dict[str, np.ndarray]:
    """effdet ``state`` (a checkpoint or its state_dict; torch tensors or arrays) -> a dict for
    ``model.set_state_dict``. Raises ValueError naming every unknown, missing or mis-shaped
    tensor (e.g. a D1 checkpoint for a D0 config, or another num_classes)."""
    state = unwrap_checkpoint(state)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    out, unknown, shapes = {}, [], []
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        try:
            key = _our_name(name)
        except KeyError:
            unknown.append(name)
            continue
        if key not in ours:
            unknown.append(f"{name} (-> {key})")
            continue
        if list(value.shape) != ours[key]:
            shapes.append(f"{name} {list(value.shape)} vs ours {key} {ours[key]}")
            continue
        out[key] = value.astype("float32")
    missing = sorted(set(ours) - set(out) - {_our_name_safe(s) for s in shapes})
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} effdet tensors with no counterpart: {unknown[:8]}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatches: {shapes[:8]}")
    if missing:
        problems.append(f"{len(missing)} of our tensors missing from the checkpoint: {missing[:8]}")
    if problems:
        raise ValueError("effdet checkpoint does not fit this model (check the config, e.g. "
                         "efficientdet_d1.yml for a d1 checkpoint, and num_classes): "
                         + "; ".join(problems))
    return out


def _our_name_safe(entry: str) -> str:
    """The 'ours' key from a shape-mismatch message."""
    return entry.split(" vs ours ")[1].split(" ")[0]


def read_effdet_checkpoint(path: str) -> Dict[str, np.ndarray]:
    """A ``.pth`` (needs torch importable) or ``.npz`` effdet checkpoint -> its state_dict."""
    if path.endswith(".npz"):
        return unwrap_checkpoint(dict(np.load(path)))
    try:
        import torch
    except ImportError as e:
        raise ValueError(f"{path}: reading a .pth needs torch in this Python; or save it as .npz "
                         f"(np.savez(out, **{{k: v.numpy() for k, v in state_dict.items()}}))") from e
    return unwrap_checkpoint(torch.load(path, map_location="cpu", weights_only=False))


def convert_effdet_checkpoint(src: str, config_path: str, dst: str) -> str:
    """Convert ``src`` for the model of ``config_path`` and write ``<dst>.pdparams``; returns it."""
    import paddle

    from ..core.config import load_config
    from .builder import build_model

    model = build_model(load_config(config_path))
    state = convert_effdet_state_dict(read_effdet_checkpoint(src), model)
    model.set_state_dict(state)
    out = dst if dst.endswith(".pdparams") else dst + ".pdparams"
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    paddle.save(model.state_dict(), out)
    return out

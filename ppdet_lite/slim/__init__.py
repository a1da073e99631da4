"""Model compression with PaddleSlim: pruning, distillation, quantization (QAT, PTQ).

A slim config is a YAML file with a ``slim:`` key, as in PaddleDetection's ``configs/slim``:

    slim: Pruner | QAT | PTQ      the file's keys are merged over the model config (-c)
    slim: Distill | DistillPrune  the file's _BASE_ is the teacher's config and its
                                  pretrain_weights the teacher's weights; the student is -c

``load_slim_config(config, slim_config, overrides)`` returns ``(cfg, slim_cfg)`` for both kinds.
``build_slim_model(cfg, slim_cfg, mode)`` gives the model to train / evaluate / export (what
``--slim_config`` does in tools/train.py, eval.py and export_model.py).
Command lines: ``ppdet_lite.slim.tools`` (``prune_distill``, ``quant``: QAT, ``post_quant``: PTQ),
run as ``python slim/<name>.py``. Exported models come from ``ppdet_lite.export``.
"""
import os
from typing import Any, Dict, Iterable, Optional, Tuple, Union

from ..core.config import Config, apply_overrides, load_config, merge
from ..core.errors import ConfigError
from .builder import SlimModel, build_slim_model, build_slim_trainer, fixed_input_shape, same_shapes
from .distill import (DistillModel, DistillYOLOv3Loss, NeckFeatureDistillLoss, build_distill_loss,
                      distill_wrapper, teacher_from)
from .prune import (Pruner, count_flops, count_params, format_sensitivity, load_pruned_weights,
                    make_pruner, prunable_layers, propose_ratios, resolve_layer, sensitivity)
from .quant import PTQ, QAT, evaluate_inference_model, export_quantized, inference_latency

__all__ = ["load_slim_config", "teacher_weights", "SLIM_MODES", "SlimModel", "build_slim_model", "build_slim_trainer",
           "fixed_input_shape", "same_shapes", "Pruner",
           "QAT", "PTQ", "DistillModel", "DistillYOLOv3Loss", "NeckFeatureDistillLoss", "build_distill_loss",
           "distill_wrapper",
           "teacher_from", "count_flops", "count_params", "format_sensitivity",
           "load_pruned_weights", "make_pruner", "prunable_layers", "propose_ratios",
           "resolve_layer", "sensitivity", "evaluate_inference_model", "export_quantized",
           "inference_latency"]

SLIM_MODES = ("Pruner", "QAT", "PTQ", "Distill", "DistillPrune")
_META = ("_sources", "_path", "filename")
# keys of a Distill slim file that describe the teacher or the distillation, not the student
_TEACHER_KEYS = {"slim", "slim_method", "pretrain_weights", "weights", "distill_loss", "pruner",
                 "architecture"}

Overrides = Union[None, Dict[str, Any], Iterable[str]]


def load_slim_config(config: str, slim_config: str, overrides: Overrides = None) -> Tuple[Config, Config]:
    """``(cfg, slim_cfg)``: the config to train / evaluate / export, and the slim file loaded.

    Pruner / QAT / PTQ: ``cfg`` is ``config`` with the slim file merged over it. Distill /
    DistillPrune: ``slim_cfg`` is the teacher's config (slim file + its ``_BASE_``); ``cfg`` is the
    student's ``config`` plus the training keys written in the slim file itself (epoch,
    LearningRate, ...). ``cfg['filename']`` becomes the slim file's name, so outputs go to
    ``output/<slim config name>`` as in PaddleDetection. ``overrides`` apply to ``cfg`` last.
    """
    slim_cfg = load_config(slim_config)
    mode = slim_cfg.get("slim")
    if mode not in SLIM_MODES:
        raise ConfigError(f"{slim_config}: slim: {mode!r}; expected one of {list(SLIM_MODES)}")
    cfg = load_config(config, overrides)
    if mode in ("Distill", "DistillPrune"):
        own = {k: v for k, v in slim_cfg.items() if slim_cfg.source(k) == slim_cfg["_path"]
               and k not in _TEACHER_KEYS and k not in _META
               and k not in (slim_cfg.get("distill_loss"), "DistillYOLOv3Loss", "Pruner")}
    else:
        own = {k: v for k, v in slim_cfg.items() if k not in _META}
    merge(cfg, own)
    apply_overrides(cfg, overrides)  # the command line wins over the slim file
    cfg["slim"] = mode
    cfg["filename"] = os.path.splitext(os.path.basename(slim_config))[0]
    return cfg, slim_cfg


def teacher_weights(slim_cfg: Dict[str, Any], override: Optional[str] = None) -> str:
    """The teacher's weights: ``override``, else the Distill file's pretrain_weights / weights."""
    weights = override or slim_cfg.get("pretrain_weights") or slim_cfg.get("weights")
    if not weights:
        raise ConfigError(f"{slim_cfg.get('_path')}: set pretrain_weights to the teacher's trained "
                          "weights (or pass --teacher_weights)")
    return weights

"""``--slim_config`` for tools/train.py, eval.py and export_model.py: the model a slim config asks for.

    train   Pruner        -c's model, pretrain_weights loaded, then pruned by the Pruner section
            QAT           -c's model, pretrain_weights loaded, then quantized (fake-quant layers)
            Distill       -c's model (student) + a frozen teacher: the slim file's model and weights
            DistillPrune  as Distill, the student pruned first
    eval /  Pruner,       -c's model shrunk to the shapes stored in ``weights`` (a pruned checkpoint
    export  DistillPrune  says what was pruned), then loaded
            QAT           -c's model quantized, then ``weights`` (a QAT checkpoint) loaded
            Distill       -c's model with ``weights``: a distilled student is a plain model
PTQ works on an exported model, not on checkpoints: slim/post_quant.py.
``build_slim_trainer`` gives the training ``Trainer`` for a slim config: the model above and, for
Distill / DistillPrune, the ``DistillModel`` wrapper around it for the training step.
"""
from typing import Any, Dict, List, NamedTuple, Optional

import paddle.nn as nn

from ..core.errors import ConfigError
from ..core.registry import create
from ..utils.logger import get_logger

logger = get_logger(__name__)
__all__ = ["SlimModel", "build_slim_model", "build_slim_trainer", "fixed_input_shape", "same_shapes"]


class SlimModel(NamedTuple):
    model: nn.Layer
    teacher: Optional[nn.Layer] = None  # Distill / DistillPrune training
    qat: Any = None                     # the QAT object that quantized ``model`` (exports it)


def fixed_input_shape(cfg: Dict[str, Any]) -> List[int]:
    """[C, H, W] for FLOPs counts, pruning and latency: ``TestReader.inputs_def.image_shape``, or the
    EvalReader's Resize target when that shape is dynamic."""
    from ..export.infer_cfg import image_shape_of

    shape = image_shape_of(cfg)[1:]
    if shape[1] in (None, -1):
        for op in (cfg.get("EvalReader") or {}).get("sample_transforms") or []:
            if "Resize" in op:
                size = op["Resize"]["target_size"]
                shape = [3] + ([size, size] if isinstance(size, int) else list(size))
    if shape[1] in (None, -1):
        raise ConfigError("set TestReader.inputs_def.image_shape: [3, H, W] (pruning and FLOPs "
                          "counts need a fixed input size)")
    return [int(s) for s in shape]


def _slim_file(cfg: Dict[str, Any], slim_cfg: Dict[str, Any]) -> str:
    return slim_cfg.get("_path") or cfg.get("filename") or "<slim config>"


def build_slim_model(cfg: Dict[str, Any], slim_cfg: Dict[str, Any], mode: str = "train") -> SlimModel:
    """The model (and teacher / QAT object) of ``cfg, slim_cfg = load_slim_config(...)``.

    ``mode`` train: start from ``cfg['pretrain_weights']`` (module docstring); eval / export:
    load ``cfg['weights']``, a checkpoint written by training with the same slim config.
    """
    from ..engine.checkpoint import load_weights, resolve
    from ..modeling import build_model
    from .distill import teacher_from
    from .prune import load_pruned_weights
    from . import teacher_weights

    kind, where = cfg["slim"], _slim_file(cfg, slim_cfg)
    if kind == "PTQ":
        raise ConfigError(f"{where}: slim: PTQ quantizes an exported model after training; run "
                          "python slim/post_quant.py -c CONFIG --slim_config " + where)
    model = build_model(cfg)
    qat = create("QAT", cfg.get("QAT") or {}, where=f"{where}: QAT") if kind == "QAT" else None
    pruned = kind in ("Pruner", "DistillPrune")
    if mode != "train":
        weights = cfg.get("weights")
        if not weights:
            raise ConfigError(f"{where}: no weights to load: pass -o weights=output/<slim config "
                              "name>/model_final (a checkpoint trained with this slim config)")
        if pruned:
            from ..engine.checkpoint import read_state, resolve, strip_suffix, verify_checkpoint

            verify_checkpoint(strip_suffix(resolve(weights)))
            load_pruned_weights(model, read_state(resolve(weights)))
        elif qat is not None:
            qat(model)
            load_weights(model, weights)
        else:
            load_weights(model, weights)
        model.eval()
        return SlimModel(model, qat=qat)

    teacher = None
    if kind in ("Distill", "DistillPrune"):
        teacher = teacher_from(slim_cfg, teacher_weights(slim_cfg))
    if cfg.get("pretrain_weights"):  # all of them when pruning or quantizing a trained model
        load_weights(model, cfg["pretrain_weights"], partial=kind not in ("Pruner", "QAT"))
    elif kind == "DistillPrune" and same_shapes(model, teacher):
        model.set_state_dict(teacher.state_dict())
        logger.info("DistillPrune: the student has no pretrain_weights and the teacher's shapes: "
                    "it starts from the teacher's weights")
    elif kind in ("Pruner", "QAT"):
        raise ConfigError(f"{where}: set pretrain_weights to the trained model to "
                          f"{'prune' if pruned else 'quantize'}")
    if pruned:
        section = (cfg if kind == "Pruner" else slim_cfg).get("Pruner")
        if not section:
            raise ConfigError(f"{where}: slim: {kind} needs a Pruner section")
        create("Pruner", section, where=f"{where}: Pruner")(model, fixed_input_shape(cfg))
    if qat is not None:
        qat(model)
    return SlimModel(model, teacher, qat)


def build_slim_trainer(cfg: Dict[str, Any], slim_cfg: Dict[str, Any], seed: Optional[int] = None,
                       hooks: Optional[list] = None):
    """A training ``Trainer`` for ``cfg, slim_cfg = load_slim_config(...)`` (what tools/train.py
    --slim_config runs): the slim model; a distillation wrapper when the slim config has a teacher;
    ``hooks`` as ``Trainer``'s."""
    from ..engine.trainer import Trainer
    from .distill import build_distill_loss, distill_wrapper

    model, teacher, _ = build_slim_model(cfg, slim_cfg, "train")
    wrapper = distill_wrapper(teacher, build_distill_loss(slim_cfg)) if teacher is not None else None
    return Trainer(cfg, mode="train", seed=seed, model=model, train_wrapper=wrapper, hooks=hooks)


def same_shapes(a: nn.Layer, b: nn.Layer) -> bool:
    """Whether two models have the same state_dict keys and tensor shapes."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(list(sa[k].shape) == list(sb[k].shape) for k in sa)

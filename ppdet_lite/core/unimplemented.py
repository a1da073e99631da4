"""PaddleDetection settings that ppdet_lite deliberately does not implement, in one place.

A PaddleDetection config may carry such a setting. It loads while the value is one that asks
for nothing (``use_xpu: false``, ``cutmix_epoch: -1``); any other value is a ``ConfigError``
naming the file, the key and the value, saying ppdet_lite does not implement it and what to do
instead. Three kinds of tables use it:

- top-level keys: ``GLOBAL`` below, checked by ``load_config`` (``core/config.py``);
- reader keys (``TrainReader`` / ``EvalReader`` / ``TestReader``): ``READER`` below, checked by
  ``load_config`` and by ``build_dataloader``;
- constructor arguments of a registered component: a class attribute
  ``NOT_IMPLEMENTED = {"trt": NotImplementedSetting((False,), "...")}``. ``registry.create``
  checks it and then drops the key, so the constructor does not take the argument at all.
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Tuple, Union

from .errors import ConfigError

__all__ = ["NotImplementedSetting", "check_not_implemented", "GLOBAL", "READER"]


@dataclass(frozen=True)
class NotImplementedSetting:
    """``accepted``: the values that load (PaddleDetection's default first); ``what``: what the
    setting does in PaddleDetection; ``instead``: what to do in ppdet_lite, if anything."""

    accepted: Tuple[Any, ...]
    what: str
    instead: str = ""

    def accepts(self, value: Any) -> bool:
        # bool is an int in Python: ``True`` must not pass for ``1`` nor ``0`` for ``False``
        return any(value == v and isinstance(value, bool) == isinstance(v, bool)
                   for v in self.accepted)


def check_not_implemented(values: Mapping[str, Any], table: Mapping[str, NotImplementedSetting],
                          where: Union[str, Callable[[str], str]]) -> None:
    """Raise ``ConfigError`` for the first key of ``values`` in ``table`` whose value is not
    accepted. ``where`` is the file/section for messages, or a function of the key giving it."""
    for key, setting in table.items():
        if key not in values or setting.accepts(values[key]):
            continue
        loc = where(key) if callable(where) else where
        ok = " or ".join("null" if v is None else repr(v) for v in setting.accepted)
        raise ConfigError(
            f"{loc}: {key}: {values[key]!r}: ppdet_lite does not implement {key} "
            f"(in PaddleDetection: {setting.what}). "
            f"{setting.instead + '. ' if setting.instead else ''}"
            f"Remove the key or set it to {ok}.")


_DEVICE = "ppdet_lite runs on the CPU or a CUDA GPU only: set use_gpu"

GLOBAL: Dict[str, NotImplementedSetting] = {
    "use_xpu": NotImplementedSetting((False, None), "run on a Kunlun XPU", _DEVICE),
    "use_npu": NotImplementedSetting((False, None), "run on an Ascend NPU", _DEVICE),
    "use_mlu": NotImplementedSetting((False, None), "run on a Cambricon MLU", _DEVICE),
    "ema_filter_no_grad": NotImplementedSetting(
        (False, None), "leave parameters with stop_gradient out of the EMA",
        "ppdet_lite's EMA averages every parameter and BN statistic (use_ema, ema_decay)"),
    # shared with BBoxPostProcess in PaddleDetection, so they may be written at the top level
    "export_onnx": NotImplementedSetting(
        (False, None), "append a fake box to every post-processed output, for ONNX export",
        "export with tools/export_model.py --onnx: the graph converts as it is"),
    "export_eb": NotImplementedSetting(
        (False, None), "skip the post-process after NMS, for EdgeBoard hardware"),
    "slim_method": NotImplementedSetting(
        (None,), "pick the FGD / LD / CWD / PPYOLOEDistill distillation model",
        "ppdet_lite distils the YOLOv3 outputs with DistillYOLOv3Loss: slim: Distill, no slim_method"),
    "pruner": NotImplementedSetting(
        ("Pruner", None), "the pruner component a DistillPrune config builds",
        "ppdet_lite's DistillPrune prunes with the Pruner section"),
}

READER: Dict[str, NotImplementedSetting] = {
    "cutmix_epoch": NotImplementedSetting(
        (-1,), "pair samples for a Cutmix op until this epoch", "ppdet_lite has no Cutmix op"),
    "fuse_normalize": NotImplementedSetting(
        (False,), "fold NormalizeImage into the exported model",
        "ppdet_lite's inference models take normalized images; keep NormalizeImage in TestReader"),
}

"""The ``infer_cfg.yml`` an exported model dir carries (PaddleDetection's deploy config) and the
image input shape it is exported for.

``infer_cfg.yml``: ``mode, draw_threshold, metric, use_dynamic_shape, arch: YOLO,
min_subgraph_size: 3, Preprocess`` (TestReader's transforms as deploy ops), ``label_list``.
``TestReader.inputs_def.image_shape: [3,H,W]`` fixes H, W (TensorRT, ONNX, Lite like that);
``[3,-1,-1]`` (or no image_shape) leaves them free.
"""
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import yaml

from ..core.errors import ConfigError

__all__ = ["ARCH", "MIN_SUBGRAPH_SIZE", "image_shape_of", "preprocess_list", "infer_cfg",
           "write_infer_cfg"]

# PaddleDetection's TRT_MIN_SUBGRAPH value for the YOLO family
ARCH, MIN_SUBGRAPH_SIZE = "YOLO", 3


def image_shape_of(cfg: Dict[str, Any]) -> List[Optional[int]]:
    """[None, 3, H, W] from ``TestReader.inputs_def.image_shape`` (H, W = -1: dynamic)."""
    shape = ((cfg.get("TestReader") or {}).get("inputs_def") or {}).get("image_shape")
    if shape is None:
        return [None, 3, -1, -1]
    if len(shape) not in (3, 4):
        raise ConfigError(f"TestReader.inputs_def.image_shape={shape}: expected [3, H, W] "
                          "(H, W = -1 for a dynamic shape)")
    return [None] + list(shape[-3:])


def preprocess_list(cfg: Dict[str, Any], image_shape: List[Optional[int]]) -> List[dict]:
    """TestReader's sample transforms after Decode as deploy ops; a fixed image_shape sets
    Resize.target_size (and LetterBoxResize's); a PadBatch batch transform becomes PadStride."""
    reader = cfg.get("TestReader") or {}
    ops = []
    for op in reader.get("sample_transforms") or []:
        (name, kwargs), = op.items()
        if name == "Decode":
            continue
        entry = {"type": name, **dict(kwargs or {})}
        if name in ("Resize", "LetterBoxResize") and image_shape[2] not in (None, -1):
            entry["target_size"] = list(image_shape[2:])
        if name == "Resize":
            entry.setdefault("interp", 1)  # cv2.INTER_LINEAR, PaddleDetection's default
        ops.append(entry)
    for op in reader.get("batch_transforms") or []:
        (name, kwargs), = op.items()
        if name == "PadBatch":
            ops.append({"type": "PadStride", "stride": (kwargs or {}).get("pad_to_stride", 0)})
    if not ops:
        raise ConfigError(f"{cfg.get('_path', '<config>')}: TestReader.sample_transforms is "
                          "empty; add Resize, NormalizeImage and Permute")
    return ops


def infer_cfg(cfg: Dict[str, Any], image_shape: List[Optional[int]],
              labels: List[str]) -> "OrderedDict[str, Any]":
    """The ``infer_cfg.yml`` content, keys in PaddleDetection's order."""
    return OrderedDict(mode="paddle", draw_threshold=float(cfg.get("infer_draw_threshold", 0.5)),
                       metric=cfg.get("metric", "COCO"),
                       use_dynamic_shape=image_shape[2] in (None, -1), arch=ARCH,
                       min_subgraph_size=MIN_SUBGRAPH_SIZE,
                       Preprocess=preprocess_list(cfg, image_shape), label_list=list(labels))


def write_infer_cfg(cfg: Dict[str, Any], save_dir: str, image_shape: List[Optional[int]],
                    labels: Optional[List[str]] = None) -> str:
    """Write ``save_dir/infer_cfg.yml``; ``labels`` default to the dataset's (``label_list``).
    Returns the file's path."""
    from ..data.builder import label_list

    content = infer_cfg(cfg, image_shape, labels if labels is not None else label_list(cfg))
    path = os.path.join(save_dir, "infer_cfg.yml")
    with open(path, "w") as f:
        yaml.safe_dump(dict(content), f, sort_keys=False, default_flow_style=False)
    return path

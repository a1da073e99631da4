"""Export a trained detector as a Paddle inference model dir in PaddleDetection's deploy format.

``export_model(cfg)`` writes ``<output_dir>/<config name>/``:
  model.pdmodel, model.pdiparams   ``paddle.jit.save`` of the model with inputs ``image
                                   [N,3,H,W]``, ``im_shape [N,2]``, ``scale_factor [N,2]``;
                                   outputs ``bbox [M,6]`` + ``bbox_num [N]``
  infer_cfg.yml                    ``mode, draw_threshold, metric, use_dynamic_shape, arch: YOLO,
                                   min_subgraph_size: 3, Preprocess, label_list``
Knobs (``export:`` in runtime.yml, or ``-o export.nms=False``): ``benchmark`` / ``post_process:
false`` → raw head maps only; ``nms: false`` → decoded ``boxes [N,M,4]`` + ``scores [N,nc,M]``;
``fuse_conv_bn`` folds each BatchNorm into the conv before it. ``TestReader.inputs_def.
image_shape: [3,H,W]`` fixes H, W (TensorRT, ONNX, Lite like that); ``[3,-1,-1]`` leaves them free.
"""
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn
import yaml

from ..core.errors import ConfigError
from ..utils.logger import get_logger

logger = get_logger(__name__)

__all__ = ["export_model", "fuse_conv_bn", "infer_cfg", "image_shape_of", "preprocess_list",
           "save_inference_model", "set_export_mode"]

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
    Resize.target_size; a PadBatch batch transform becomes PadStride."""
    reader = cfg.get("TestReader") or {}
    ops = []
    for op in reader.get("sample_transforms") or []:
        (name, kwargs), = op.items()
        if name == "Decode":
            continue
        entry = {"type": name, **dict(kwargs or {})}
        if name == "Resize":
            if image_shape[2] not in (None, -1):
                entry["target_size"] = list(image_shape[2:])
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


def fuse_conv_bn(model: nn.Layer) -> int:
    """Fold every BatchNorm that directly follows a Conv2D among a layer's children into that
    conv (weight·γ/σ, bias β + (b − μ)·γ/σ); the BN becomes Identity. Returns the count."""
    fused = 0
    for parent in [model] + list(model.sublayers()):
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:]):
            if not (isinstance(conv, nn.Conv2D) and isinstance(bn, (nn.BatchNorm2D, nn.BatchNorm))):
                continue
            gamma = bn.weight if bn.weight is not None else paddle.ones([conv.weight.shape[0]])
            beta = bn.bias if bn.bias is not None else paddle.zeros([conv.weight.shape[0]])
            eps = getattr(bn, "_epsilon", 1e-5)
            k = gamma / paddle.sqrt(bn._variance + eps)
            bias = conv.bias if conv.bias is not None else paddle.zeros([conv.weight.shape[0]])
            new_bias = beta + (bias - bn._mean) * k
            conv.weight.set_value(conv.weight * k.reshape([-1, 1, 1, 1]))
            if conv.bias is None:
                conv.bias = conv.create_parameter([conv.weight.shape[0]], is_bias=True)
            conv.bias.set_value(new_bias)
            setattr(parent, bn_name, nn.Identity())
            fused += 1
    return fused


def set_export_mode(model: nn.Layer, export: Dict[str, Any]) -> str:
    """Apply ``export.*`` to the architecture; returns what the graph outputs, for the log."""
    if export.get("benchmark", False) or not export.get("post_process", True):
        model.exclude_post_process = True
        return "raw head maps (no decode, no NMS)"
    if not export.get("nms", True):
        model.exclude_nms = True
        return "decoded boxes [N,M,4] and scores [N,nc,M] (no NMS)"
    return "bbox [M,6] and bbox_num [N]"


def save_inference_model(model: nn.Layer, path_prefix: str,
                         image_shape: List[Optional[int]]) -> List[str]:
    """``paddle.jit.save`` with PaddleDetection's input specs; returns the input names kept
    (a graph that ignores im_shape/scale_factor, e.g. a benchmark export, takes only image)."""
    spec = {"image": paddle.static.InputSpec(image_shape, "float32", "image"),
            "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
            "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor")}
    static = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)  # AST, not SOT
    program = static.forward.concrete_program.main_program
    used = {name for block in program.blocks for op in block.ops for names in
            op.desc.inputs().values() for name in names}
    kept = {k: v for k, v in spec.items() if k in used}
    paddle.jit.save(static, path_prefix, input_spec=[kept])
    return list(kept)


def export_model(cfg: Dict[str, Any], output_dir: str = "output_inference",
                 model: Optional[nn.Layer] = None, labels: Optional[List[str]] = None) -> str:
    """Export ``cfg``'s model (built and loaded from ``cfg['weights']`` unless ``model`` is
    given) to ``<output_dir>/<config name>``; returns that directory."""
    from .. import build_model, load_weights
    from ..data.builder import label_list

    paddle.set_device("cpu")
    if model is None:
        weights = cfg.get("weights")
        if not weights:
            raise ConfigError(f"{cfg.get('_path', '<config>')}: export needs trained weights; "
                              "pass -o weights=output/<name>/model_final")
        model = build_model(cfg)
        load_weights(model, weights)
    model.eval()
    export = dict(cfg.get("export") or {})
    if export.get("fuse_conv_bn", False):
        logger.info(f"fused {fuse_conv_bn(model)} conv+bn pairs")
    outputs = set_export_mode(model, export)
    image_shape = image_shape_of(cfg)
    save_dir = os.path.join(output_dir, cfg.get("filename") or "model")
    os.makedirs(save_dir, exist_ok=True)
    content = infer_cfg(cfg, image_shape, labels if labels is not None else label_list(cfg))
    with open(os.path.join(save_dir, "infer_cfg.yml"), "w") as f:
        yaml.safe_dump(dict(content), f, sort_keys=False, default_flow_style=False)
    inputs = save_inference_model(model, os.path.join(save_dir, "model"), image_shape)
    logger.info(f"exported {save_dir}: inputs {inputs}, image {image_shape}, outputs {outputs}")
    return save_dir

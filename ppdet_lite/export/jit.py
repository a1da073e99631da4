"""Export a trained detector as a Paddle inference model dir in PaddleDetection's deploy format.

``export_model(cfg)`` writes ``<output_dir>/<config name>/``:
  model.pdmodel, model.pdiparams   ``paddle.jit.save`` of the model with inputs ``image
                                   [N,3,H,W]``, ``im_shape [N,2]``, ``scale_factor [N,2]``;
                                   outputs ``bbox [M,6]`` + ``bbox_num [N]``
  infer_cfg.yml                    see ``infer_cfg.py``
Knobs (``export:`` in runtime.yml, or ``-o export.nms=False``): ``benchmark`` / ``post_process:
false`` → raw head maps only; ``nms: false`` → decoded ``boxes [N,M,4]`` + ``scores [N,nc,M]``;
``fuse_conv_bn`` folds each BatchNorm into the conv before it. A saved program with a conv + bias
+ BatchNorm (EfficientDet) gets its conv biases as ``axis=1`` adds and the convs that share a
filter their own copies (``program_edit.fold_bias_reshapes`` / ``unshare_conv_filters``): Paddle
Inference's oneDNN passes then fuse conv + bias + BatchNorm + activation (with swish as one op,
EfficientDet-D0 512: 126 -> 84 ms; the same outputs). The model is traced where its parameters
are; the process's paddle device is left as it was, and no training code is imported.
"""
import os
from typing import Any, Dict, List, Optional

import paddle
import paddle.nn as nn

from ..core.errors import ConfigError
from ..utils.logger import get_logger
from .program_edit import SavedProgram, fold_bias_reshapes, unshare_conv_filters
from .infer_cfg import image_shape_of, infer_cfg, preprocess_list, write_infer_cfg  # noqa: F401

logger = get_logger(__name__)

__all__ = ["export_model", "fuse_conv_bn", "input_spec", "save_inference_model", "set_export_mode",
           "image_shape_of", "infer_cfg", "preprocess_list", "write_infer_cfg"]


def input_spec(image_shape: List[Optional[int]]) -> Dict[str, "paddle.static.InputSpec"]:
    """PaddleDetection's export inputs: ``image [N,3,H,W]`` (``image_shape``), ``im_shape [N,2]``
    (network input h, w) and ``scale_factor [N,2]`` (input / original, y then x), float32."""
    return {"image": paddle.static.InputSpec(list(image_shape), "float32", "image"),
            "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
            "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor")}


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
    """Apply ``export.benchmark / post_process / nms`` to the architecture's exclude flags (both
    set, so no flag stays from an earlier export); returns what the graph outputs."""
    no_post = bool(export.get("benchmark", False) or not export.get("post_process", True))
    no_nms = not export.get("nms", True)
    if hasattr(model, "exclude_post_process") and hasattr(model, "exclude_nms"):
        model.exclude_post_process, model.exclude_nms = no_post, no_nms
    elif no_post or no_nms:
        raise ConfigError(f"export.benchmark / post_process / nms: {type(model).__name__} has no "
                          "exclude_post_process / exclude_nms switch (a detector architecture has)")
    if no_post:
        return "raw head maps (no decode, no NMS)"
    if no_nms:
        return "decoded boxes [N,M,4] and scores [N,nc,M] (no NMS)"
    return "bbox [M,6] and bbox_num [N]"


def save_inference_model(model: nn.Layer, path_prefix: str,
                         image_shape: List[Optional[int]]) -> List[str]:
    """``paddle.jit.save`` with PaddleDetection's input specs to ``<dir>/model``, conv biases and
    shared filters then prepared for the oneDNN fuses (see the module doc); returns the input
    names kept (a graph that ignores im_shape/scale_factor, e.g. a benchmark export, takes only
    image)."""
    model_dir, filename = os.path.split(path_prefix)
    if filename != "model":
        raise ValueError(f"{path_prefix}: an inference model is <dir>/model.pdmodel")
    spec = input_spec(image_shape)
    static = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)  # AST, not SOT
    program = static.forward.concrete_program.main_program
    used = {name for block in program.blocks for op in block.ops for names in
            op.desc.inputs().values() for name in names}
    kept = {k: v for k, v in spec.items() if k in used}
    paddle.jit.save(static, path_prefix, input_spec=[kept])
    if _biased_conv_before_batch_norm(program):  # else nothing to gain: no reload and re-save
        with SavedProgram(model_dir) as prog:
            fold_bias_reshapes(prog)
            unshare_conv_filters(prog)
            prog.save(model_dir, strip_attrs=False)
    return list(kept)


def _biased_conv_before_batch_norm(program) -> bool:
    """Whether a conv's output goes through a bias add into a BatchNorm (EfficientDet's BiFPN and
    head), the pattern whose oneDNN fuse the ``reshape2`` bias blocks."""
    ops = program.global_block().ops
    convs = {name for op in ops if op.type in ("conv2d", "depthwise_conv2d")
             for name in op.output_arg_names}
    biased = {op.output("Out")[0] for op in ops
              if op.type == "elementwise_add" and op.input("X")[0] in convs}
    return any(op.type == "batch_norm" and op.input("X")[0] in biased for op in ops)


def export_model(cfg: Dict[str, Any], output_dir: str = "output_inference",
                 model: Optional[nn.Layer] = None, labels: Optional[List[str]] = None) -> str:
    """Export ``cfg``'s model (built and loaded from ``cfg['weights']`` unless ``model`` is
    given; a given model is changed in place: eval mode, export flags, fused BatchNorms) to
    ``<output_dir>/<config name>``; returns that directory."""
    if model is None:
        from ..engine.checkpoint import load_weights
        from ..modeling import build_model

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
    write_infer_cfg(cfg, save_dir, image_shape, labels)
    inputs = save_inference_model(model, os.path.join(save_dir, "model"), image_shape)
    logger.info(f"exported {save_dir}: inputs {inputs}, image {image_shape}, outputs {outputs}")
    return save_dir

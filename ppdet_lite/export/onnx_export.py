"""Exported model dir → ONNX (paddle2onnx 1.3.1, opset ≤ 18), checked in onnxruntime.

    onnx_path = export_onnx("output_inference/ppyolo_tiny")  # model.onnx beside model.pdmodel

Graphs paddle2onnx cannot convert are refused before converting, naming the op and what to do:
``deformable_conv`` (DCNv2 needs ONNX DeformConv, opset 19), ``matrix_nms`` (no ONNX form) and
``multiclass_nms3`` with ``nms_top_k -1`` (paddle2onnx makes it keep one box).
The check runs Paddle Inference and onnxruntime on one synthetic image and compares: the same set
of ``bbox`` rows (NMS output order may differ; rows tied at a ``keep_top_k`` cut may be swapped)
or allclose raw outputs.
"""
import os
from typing import Dict, List, Optional

import numpy as np

from ..core.errors import ConfigError
from ..utils.logger import get_logger
from .inference import inference_predictor, run_inference
from .program_edit import program_op_descs, program_ops

logger = get_logger(__name__)

__all__ = ["ONNX_BLOCKERS", "attr_blockers",
           "check_convertible", "export_onnx", "onnx_run", "paddle_run", "match_boxes",
           "nms_keep_top_k", "sure_rows", "synthetic_inputs"]

MAX_OPSET = 18
ONNX_BLOCKERS = {
    "deformable_conv": "DCNv2 needs ONNX DeformConv (opset 19) and paddle2onnx 1.3.1 stops at "
                       "opset 18; export a model without DCN (backbone dcn_v2_stages: [])",
    "deformable_conv_v1": "deformable conv has no ONNX form below opset 19; export a model "
                          "without DCN (backbone dcn_v2_stages: [])",
    "matrix_nms": "paddle2onnx has no MatrixNMS; export with `-o export.nms=False` (decoded "
                  "boxes + scores, run NMS yourself) or switch to MultiClassNMS: `-o "
                  "\"BBoxPostProcess.nms={name: MultiClassNMS, keep_top_k: 100, nms_top_k: 1000, "
                  "nms_threshold: 0.45, score_threshold: 0.01}\"`",
}


def attr_blockers(pdmodel: str) -> Dict[str, str]:
    """Ops ONNX takes but paddle2onnx 1.3.1 converts wrongly with the attributes they have:
    ``multiclass_nms3`` with ``nms_top_k -1`` keeps 1 box in onnxruntime (measured: 1 of 43)."""
    for op in program_op_descs(pdmodel):
        attrs = {a.name: a.i for a in op.attrs}
        if op.type == "multiclass_nms3" and attrs.get("nms_top_k", 0) < 0:
            return {"multiclass_nms3": "nms_top_k -1 (all boxes) converts to an ONNX NMS that "
                                       "keeps one box; set MultiClassNMS nms_top_k (e.g. 1000, "
                                       "as PP-YOLO Tiny does)"}
    return {}


def check_convertible(model_dir: str) -> None:
    """ConfigError naming each op of ``model_dir/model.pdmodel`` that ONNX export cannot take."""
    pdmodel = os.path.join(model_dir, "model.pdmodel")
    if not os.path.isfile(pdmodel):
        raise ConfigError(f"{pdmodel} not found: export the model first (tools/export_model.py)")
    bad = {op: ONNX_BLOCKERS[op] for op in sorted(set(ONNX_BLOCKERS) & program_ops(pdmodel))}
    bad.update(attr_blockers(pdmodel))
    if bad:
        raise ConfigError(f"{pdmodel} cannot be converted to ONNX: " +
                          "; ".join(f"op {op!r}: {why}" for op, why in bad.items()))


def synthetic_inputs(model_dir: str, seed: int = 0) -> Dict[str, np.ndarray]:
    """One smooth random image at the model's input size (320 if dynamic), with im_shape and a
    scale_factor of 1 (boxes in input pixels)."""
    import yaml
    with open(os.path.join(model_dir, "infer_cfg.yml")) as f:
        cfg = yaml.safe_load(f)
    size = [320, 320]
    for op in cfg.get("Preprocess", []):
        if op.get("type") == "Resize":
            t = op["target_size"]
            size = [t, t] if isinstance(t, int) else list(t)
    rng = np.random.RandomState(seed)
    low = rng.normal(0, 1, (1, 3, 8, 8)).astype("float32")
    image = np.kron(low, np.ones((1, 1, -(-size[0] // 8), -(-size[1] // 8)), "float32"))
    image = image[:, :, :size[0], :size[1]] + rng.normal(0, 0.3, (1, 3, *size)).astype("float32")
    return {"image": np.ascontiguousarray(image),
            "im_shape": np.array([size], "float32"), "scale_factor": np.ones((1, 2), "float32")}


def paddle_run(model_dir: str, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Outputs of Paddle Inference (CPU) on ``inputs``."""
    return run_inference(inference_predictor(model_dir), inputs)


def onnx_run(onnx_path: str, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Outputs of onnxruntime (CPU) on ``inputs`` (only the names the graph takes are fed)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: inputs[i.name] for i in sess.get_inputs()})


def match_boxes(a: np.ndarray, b: np.ndarray, score_tol: float = 1e-4,
                box_tol: float = 1e-2) -> int:
    """How many rows of ``a [M,6]`` have a row of ``b`` with the same class, a score within
    ``score_tol`` and coords within ``box_tol`` pixels; row order is ignored (all pairs)."""
    a, b = np.asarray(a, np.float32).reshape(-1, 6), np.asarray(b, np.float32).reshape(-1, 6)
    if not len(a) or not len(b):
        return 0
    diff = np.abs(a[:, None, :] - b[None, :, :])
    close = (diff[..., 0] == 0) & (diff[..., 1] <= score_tol) & (diff[..., 2:].max(-1) <= box_tol)
    return int(close.any(1).sum())


def nms_keep_top_k(pdmodel: str) -> int:
    """``keep_top_k`` of the program's ``multiclass_nms3`` (-1: none or unbounded)."""
    for op in program_op_descs(pdmodel):
        if op.type == "multiclass_nms3":
            return {a.name: a.i for a in op.attrs}.get("keep_top_k", -1)
    return -1


def sure_rows(rows: np.ndarray, keep_top_k: int, score_tol: float = 1e-4) -> np.ndarray:
    """The rows of an NMS output that another runtime must reproduce: all of them, unless the
    output was cut at ``keep_top_k``; then rows tied (within ``score_tol``) with the lowest kept
    score may be swapped for equal-scored others (a top-k among ties keeps any of them)."""
    if keep_top_k <= 0 or len(rows) < keep_top_k:
        return rows
    return rows[rows[:, 1] > rows[:, 1].min() + score_tol]


def export_onnx(model_dir: str, save_file: Optional[str] = None, opset_version: int = 11,
                check: bool = True) -> str:
    """Convert ``model_dir`` to ONNX (default ``model_dir/model.onnx``); with ``check``, run it in
    onnxruntime beside Paddle Inference and raise if the outputs disagree. Returns the path."""
    if not 7 <= opset_version <= MAX_OPSET:
        raise ConfigError(f"--opset_version {opset_version}: paddle2onnx 1.3.1 supports "
                          f"7..{MAX_OPSET}")
    check_convertible(model_dir)
    import paddle2onnx
    save_file = save_file or os.path.join(model_dir, "model.onnx")
    paddle2onnx.export(os.path.join(model_dir, "model.pdmodel"),
                       os.path.join(model_dir, "model.pdiparams"), save_file,
                       opset_version=opset_version, auto_upgrade_opset=True, verbose=False,
                       enable_onnx_checker=True)
    if check:
        inputs = synthetic_inputs(model_dir)
        ref, got = paddle_run(model_dir, inputs), onnx_run(save_file, inputs)
        if ref[0].ndim == 2 and ref[0].shape[-1] == 6:  # NMS output: compare as sets
            n = int(np.asarray(ref[1]).sum()) if len(ref) > 1 else len(ref[0])
            ref_rows, got_rows = ref[0][:n], got[0][:int(np.asarray(got[1]).sum())]
            sure = sure_rows(ref_rows, nms_keep_top_k(os.path.join(model_dir, "model.pdmodel")))
            matched = match_boxes(sure, got_rows)
            ok = matched == len(sure) and len(ref_rows) == len(got_rows)
            detail = (f"{matched}/{len(sure)} Paddle boxes matched ({len(ref_rows) - len(sure)} "
                      f"tied at the keep_top_k cut not required), onnx has {len(got_rows)}")
        else:
            err = max(float(np.abs(r - g).max()) for r, g in zip(ref, got))
            ok, detail = err < 1e-3, f"max abs diff {err:.2e}"
        if not ok:
            raise RuntimeError(f"{save_file}: onnxruntime disagrees with Paddle Inference: "
                               f"{detail}")
        logger.info(f"onnx check: {detail}")
    return save_file

"""Convert an exported model dir to a Paddle Lite ``.nb`` (arm for phones, x86 to check on a PC).

    convert("output_inference/ppyolo_tiny_650e_coco", "arm")   # or: python deploy/lite/convert.py
        --model_dir output_inference/ppyolo_tiny_650e_coco --valid_targets arm [--output_dir DIR]

Writes ``DIR/model.nb``, ``DIR/infer_cfg.json`` (infer_cfg.yml as JSON: preprocess, labels) and
``DIR/det_runtime_config.json`` (PaddleDetection's Lite demo keys); DIR defaults to
``<model_dir>/lite_<target>``. Graphs the Lite runtime cannot run are refused first, naming the op.
``opt`` reads a prepared copy of the program (same outputs): conv bias reshapes folded, shared conv
filters copied per conv (``opt`` folds each BatchNorm into its conv's filter), short
variable names, no debug attributes (a smaller ``.nb``; ``compact=False`` skips it), relu6 given
its threshold, on x86 swish written as ``x * sigmoid(x)`` (Lite 2.13 has no x86 swish kernel),
and for an int8 model on x86 the workarounds of ``lite_x86_int8.py`` (``x86_int8_fixes=False``
converts it as is: wrong boxes in Lite 2.13). ``paddle_lite_opt`` comes
from ``lite_opt.py`` (PATH, else the Python 3.10 Lite venv).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, Optional

import yaml

from ..core.errors import ConfigError
from .lite_opt import LITE_VENV, LiteUnavailable, find_opt, find_python310, lite_venv  # noqa: F401
from .lite_x86_int8 import apply_x86_int8_workarounds, is_quantized, unshare_dequantized_filters
from .program_edit import (SavedProgram, compact_names, fold_bias_reshapes, program_op_descs,
                           program_ops, read_program_desc, split_swish, unshare_conv_filters,
                           write_program_desc)

__all__ = ["LITE_BLOCKERS", "LiteUnavailable", "find_python310", "lite_venv", "convert",
           "prepare_program", "all_axes_reductions", "zero_d_constants",
           "relu6_thresholds", "runtime_config", "main", "cli"]

# ops the Lite runtime has no kernel for on that target (measured; PPYOLO_REFERENCE §3, §6)
LITE_BLOCKERS = {"x86": {"flatten_contiguous_range": "segfaults in the x86 runtime; use reshape",
                         "flatten2": "segfaults in the x86 runtime; use reshape",
                         "sum": "paddle.add_n has no x86 kernel; add the tensors with +",
                         "take_along_axis": "no x86 kernel; paddle.gather on the flattened "
                                            "tensor (see EfficientDetPostProcess.candidates)"},
                 "arm": {}}


def all_axes_reductions(pdmodel: str, keep_dim: bool) -> list:
    """reduce_* ops over every axis (``reduce_all``, or no ``dim``) with that ``keep_dim``. The x86
    Lite runtime segfaults on both kinds (measured: ``paddle.sum(x)``, a 0-D output, and
    ``paddle.sum(w, keepdim=True)`` of a [2] vector or a [1,8,16,16] map crash it;
    ``paddle.sum(w, axis=0, keepdim=True)`` runs)."""
    bad = []
    for op in program_op_descs(pdmodel):
        if not op.type.startswith("reduce_"):
            continue
        attrs = {a.name: a for a in op.attrs}
        all_axes = ("reduce_all" in attrs and attrs["reduce_all"].b) or \
            ("dim" in attrs and not attrs["dim"].ints)
        if all_axes and ("keep_dim" in attrs and attrs["keep_dim"].b) == keep_dim:
            bad.append(f"{op.type} -> {op.outputs[0].arguments[0]}")
    return bad


def zero_d_constants(pdmodel: str) -> list:
    """0-D ``fill_constant`` ops (a Python scalar met a tensor, e.g. ``x ** 0.5``), each with the
    inputs it feeds. The Lite runtime aborts on them ("fill_constant ... no valid out_shape"),
    measured on x86: this is what stops PaddleDetection's IoU-aware PP-YOLOv2."""
    ops = program_op_descs(pdmodel)
    uses = {}
    for op in ops:
        for slot in op.inputs:
            for name in slot.arguments:
                uses.setdefault(name, []).append(f"{op.type}.{slot.parameter}")
    found = []
    for op in ops:
        shape = {a.name: a for a in op.attrs}.get("shape")
        if op.type == "fill_constant" and shape is not None and not (shape.ints or shape.longs) \
                and not any(slot.arguments for slot in op.inputs):  # no shape/value tensor input
            out = op.outputs[0].arguments[0]
            found.append(f"fill_constant {out} -> {', '.join(uses.get(out, ['(unused)']))}")
    return found


def prepare_program(model_dir: str, out_dir: str, valid_targets: str, compact: bool = True,
                    x86_int8_fixes: bool = True) -> Dict[str, int]:
    """Write the copy of ``model_dir`` that ``opt`` converts into ``out_dir``; returns what was
    changed (counts)."""
    report = {}
    with SavedProgram(model_dir) as prog:
        if compact:
            report["folded conv bias reshapes"] = fold_bias_reshapes(prog)
        report["convs given their own filter"] = unshare_conv_filters(prog)  # opt folds BatchNorm
        if valid_targets == "x86":
            report["swish written as x * sigmoid(x)"] = split_swish(prog)
        op_types = {op.type for op in prog.block.ops}
        if is_quantized(op_types):
            report["int8 filters given a dequantize per conv"] = unshare_dequantized_filters(prog)
        if x86_int8_fixes and valid_targets == "x86" and is_quantized(op_types):
            report.update(apply_x86_int8_workarounds(prog))
        if compact:
            report["renamed variables"] = compact_names(prog)
        prog.save(out_dir, strip_attrs=compact)
    report["relu6 given threshold 6"] = relu6_thresholds(os.path.join(out_dir, "model.pdmodel"))
    return report


def relu6_thresholds(pdmodel: str) -> int:
    """Paddle 2.6's ``relu6`` has no ``threshold`` attribute and ``opt`` aborts without one
    ("No attributes called threshold found for relu6", fp32 or int8, any target): add 6.0."""
    from paddle.base.proto import framework_pb2

    desc = read_program_desc(pdmodel)
    count = 0
    for op in (op for block in desc.blocks for op in block.ops):
        if op.type == "relu6" and not any(a.name == "threshold" for a in op.attrs):
            op.attrs.add(name="threshold", type=framework_pb2.AttrType.FLOAT, f=6.0)
            count += 1
    if count:
        write_program_desc(pdmodel, desc)
    return count


def runtime_config(output_dir: str, threshold: float, cpu_threads: int) -> dict:
    """PaddleDetection's ``det_runtime_config.json`` keys for the C++ Lite demo."""
    return {"model_dir_det": output_dir, "batch_size_det": 1, "threshold_det": threshold,
            "image_file": "", "image_dir": "", "run_benchmark": False,
            "cpu_threads": cpu_threads}


def convert(model_dir: str, valid_targets: str = "arm", output_dir: Optional[str] = None,
            enable_fp16: bool = False, threshold: float = 0.5, cpu_threads: int = 4,
            venv: str = LITE_VENV, compact: bool = True, x86_int8_fixes: bool = True) -> str:
    """Run ``paddle_lite_opt`` on (a prepared copy of) ``model_dir``; returns the output dir
    holding ``model.nb``."""
    if valid_targets not in LITE_BLOCKERS:
        raise ConfigError(f"--valid_targets {valid_targets!r}: expected one of "
                         f"{sorted(LITE_BLOCKERS)}")
    pdmodel, params = (os.path.join(model_dir, f"model.{ext}") for ext in ("pdmodel", "pdiparams"))
    cfg_path = os.path.join(model_dir, "infer_cfg.yml")
    for path in (pdmodel, params, cfg_path):
        if not os.path.isfile(path):
            raise ConfigError(f"{path} not found: --model_dir must be a dir written by "
                              "tools/export_model.py")
    ops = program_ops(pdmodel)
    blockers = {op: why for op, why in LITE_BLOCKERS[valid_targets].items() if op in ops}
    zero_d = all_axes_reductions(pdmodel, keep_dim=False)
    if zero_d and valid_targets == "x86":
        blockers["0-D reductions"] = (f"{zero_d}: full reductions give 0-D tensors, which the "
                                      "x86 runtime segfaults on; reduce over named axes with "
                                      "keepdim=True (paddle.sum(x, axis=0, keepdim=True))")
    elif zero_d:
        print(f"warning: {zero_d} produce 0-D tensors, which Paddle Lite may reject")
    keep_all = all_axes_reductions(pdmodel, keep_dim=True)
    if keep_all and valid_targets == "x86":
        blockers["reduce_all reductions"] = (f"{keep_all}: a reduction over all axes segfaults "
                                             "the x86 runtime even with keepdim=True; name the "
                                             "axes (paddle.sum(x, axis=0, keepdim=True))")
    constants = zero_d_constants(pdmodel)
    if constants:
        blockers["0-D constants"] = (f"{constants}: the Lite runtime aborts on them "
                                     "(fill_constant 'no valid out_shape'); write "
                                     "paddle.pow(x, 0.5) for x ** 0.5, or build the constant "
                                     "with shape [1]")
    if blockers:
        raise ConfigError(f"{pdmodel} has ops the {valid_targets} Lite runtime cannot run: "
                         f"{blockers}. Re-export with a model that avoids them.")
    if valid_targets == "x86" and ("fake_dequantize_max_abs" in ops
                                   or "fake_channel_wise_dequantize_max_abs" in ops):
        print("warning: fake-quantized (onnx_format: false) model: Lite's x86 int8 kernels give "
              "wrong results for it; quantize with onnx_format: true to check on x86")
    output_dir = output_dir or os.path.join(model_dir, f"lite_{valid_targets}")
    os.makedirs(output_dir, exist_ok=True)
    opt = find_opt(venv)
    nb = os.path.join(output_dir, "model.nb")
    if os.path.isfile(nb):
        os.remove(nb)  # a failed run must not leave an old .nb looking fresh
    with tempfile.TemporaryDirectory(prefix="lite_src_") as tmp:
        if compact or "relu6" in ops or (x86_int8_fixes and valid_targets == "x86"
                                         and is_quantized(ops)):
            report = prepare_program(model_dir, tmp, valid_targets, compact, x86_int8_fixes)
            pdmodel, params = (os.path.join(tmp, f"model.{e}") for e in ("pdmodel", "pdiparams"))
            print("prepared for opt: " + ", ".join(f"{k} {v}" for k, v in report.items() if v))
        cmd = opt + [f"--model_file={pdmodel}", f"--param_file={params}",
                     "--optimize_out_type=naive_buffer",
                     f"--optimize_out={os.path.join(output_dir, 'model')}",
                     f"--valid_targets={valid_targets}"]
        if enable_fp16:
            cmd.append("--enable_fp16=true")
        run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0 or not os.path.isfile(nb):
        raise RuntimeError(f"paddle_lite_opt failed (exit {run.returncode}):\n"
                           f"{(run.stdout + run.stderr)[-3000:]}")
    with open(cfg_path) as f:
        infer_cfg = yaml.safe_load(f)
    with open(os.path.join(output_dir, "infer_cfg.json"), "w") as f:
        json.dump(infer_cfg, f, indent=4)
    with open(os.path.join(output_dir, "det_runtime_config.json"), "w") as f:
        json.dump(runtime_config(output_dir, threshold, cpu_threads), f, indent=4)
    print(f"{valid_targets} model: {nb} ({os.path.getsize(nb) / 2**20:.2f} MB)")
    return output_dir


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", required=True, help="exported model dir (model.pdmodel, ...)")
    ap.add_argument("--valid_targets", default="arm", choices=sorted(LITE_BLOCKERS))
    ap.add_argument("--output_dir", help="default: <model_dir>/lite_<target>")
    ap.add_argument("--enable_fp16", action="store_true", help="FP16 weights (arm v8.2+)")
    ap.add_argument("--threshold", type=float, default=0.5,
                    help="threshold_det in the runtime json")
    ap.add_argument("--cpu_threads", type=int, default=4, help="cpu_threads in the runtime json")
    ap.add_argument("--lite_venv", default=LITE_VENV, help="where the Python 3.10 venv lives")
    ap.add_argument("--no_compact", action="store_true",
                    help="convert the program as exported (long names, debug attributes)")
    ap.add_argument("--no_x86_int8_fixes", action="store_true",
                    help="int8 model on x86: skip the kernel-bug workarounds (lite_x86_int8.py)")
    args = ap.parse_args(argv)
    convert(args.model_dir, args.valid_targets, args.output_dir, args.enable_fp16,
            args.threshold, args.cpu_threads, args.lite_venv, not args.no_compact,
            not args.no_x86_int8_fixes)


def cli() -> None:
    """``main`` for a command line: a bad model dir or graph prints one line and exits 2, a
    missing Lite toolchain one line and exits 1."""
    from ..utils.cli import run

    try:
        run(main)
    except LiteUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)

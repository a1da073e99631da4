"""Work around Paddle Lite 2.13's x86 int8 kernels before converting a quantized model for x86.

An x86 ``.nb`` exists to check a conversion on a PC. Converted as is, an int8 PP-YOLO Tiny gives
wrong head outputs there (max |diff| 2-3 vs Paddle Inference) although the same model's FP32
``.nb`` agrees within 1e-6. Four x86 kernel bugs cause it; each is reproduced on a one- or
two-layer model in tests/deploy/test_lite.py and has an exact emulation (deploy/lite/README.md);
a fifth one (a crash) stops an int8 EfficientDet:

1. ``gemm_s8u8``: activations shifted to uint8 (+128) times int8 weights with
   ``_mm256_maddubs_epi16``, whose pairwise int16 sums saturate (2 * 255 * 127 > 32767).
   Fix: weights limited to [-64, 64] (int8 values halved, scale doubled: 7-bit weights).
2. int8 conv kernels apply only relu / relu6 / leaky_relu: a fused ``hard_swish`` is dropped.
   Fix: ``hard_swish(x)`` written as ``x * hard_sigmoid(x)``, which Lite does not fuse.
3. ``calib`` fp32 -> int8: the tail loop over groups of 8 floats quantizes 4 of them and leaves
   4 bytes unwritten, so a conv input whose size is not a multiple of 32 (remainder >= 8)
   reads stale memory (SE convs on 1x1 maps, small head maps). Fix: convs whose input size per
   image is not a multiple of 32 (so that no batch size leaves such a remainder) run in float.
4. ``depthwise_conv2d`` with int8 output and a fused ``leaky_relu`` computes garbage.
   Fix: ``leaky_relu(x)`` written as ``max(x, alpha * x)``.
5. an int8 ``depthwise_conv2d`` without a bias segfaults (``Conv2dCompute<int8>::PrepareForRun``
   -> ``generate_gemm_s8u8_x86_kern::repack_bias`` reads the missing bias; gdb backtrace, and a
   1x1 conv + bias-less 3x3 depthwise conv crashes while the same with a bias runs). A
   BatchNorm gives most depthwise convs a bias; EfficientDet's BiFPN separable convs have none
   (their bias is on the pointwise conv). Fix: a zero bias added to the conv's output, which
   Lite fuses into the conv (exact: + 0).

Only the x86 copy is changed: the arm ``.nb`` is converted from the model as quantized, except
for ``unshare_dequantized_filters``, which every target's ``opt`` needs (it segfaults in
``DequantLinearOpFuser`` when one filter's ``dequantize_linear`` feeds several convs, as a QAT
EfficientDet's shared head convs do).
Handles PaddleSlim's ``quantize_linear`` / ``dequantize_linear`` format (``onnx_format: true``,
the default of PTQ and QAT here).
"""
from typing import Dict

import numpy as np

from .program_edit import DEBUG_ATTRS, copy_param

__all__ = ["is_quantized", "apply_x86_int8_workarounds", "unshare_dequantized_filters"]

CONVS = ("conv2d", "depthwise_conv2d")
CALIB_BLOCK = 32  # floats per AVX iteration of Lite's x86 fp32_to_int8


def is_quantized(op_types) -> bool:
    return "dequantize_linear" in op_types


def _float_weights(prog, dequant) -> np.ndarray:
    """What ``dequantize_linear`` makes of an int8 weight: q * scale / (2^(bits-1) - 1)."""
    q = prog.array(dequant.input("X")[0]).astype(np.float32)
    scale = prog.array(dequant.input("Scale")[0]).astype(np.float32).ravel()
    qmax = float(2 ** (dequant.attr("bit_length") - 1) - 1)
    shape = [1] * q.ndim
    if scale.size > 1:
        shape[dequant.attr("quant_axis")] = -1
    return (q * scale.reshape(shape) / qmax).astype(np.float32)


def _per_image_size(prog, name: str):
    dims = list(prog.block.var(name).shape)[1:]
    return None if any(d is None or d < 0 for d in dims) else int(np.prod(dims))


def float_ragged_convs(prog) -> int:
    """Bug 3: int8 convs whose input size per image is not a multiple of 32 (or is unknown)
    take the float weights and the unquantized input."""
    producers = prog.producers()
    count = 0
    for op in list(prog.block.ops):
        if op.type not in CONVS:
            continue
        weight, x = op.input("Filter")[0], op.input("Input")[0]
        dequant = producers.get(weight)
        if dequant is None or dequant.type != "dequantize_linear" \
                or not prog.is_param(dequant.input("X")[0]):
            continue
        size = _per_image_size(prog, x)
        if size is not None and size % CALIB_BLOCK == 0:
            continue
        float_name = dequant.input("X")[0] + ".float"
        if not prog.block.has_var(float_name):
            prog.add_param(float_name, _float_weights(prog, dequant))
        op._rename_input(weight, float_name)
        x_dequant = producers.get(x)
        if x_dequant is not None and x_dequant.type == "dequantize_linear":
            x_quant = producers.get(x_dequant.input("X")[0])
            if x_quant is not None and x_quant.type == "quantize_linear":
                op._rename_input(x, x_quant.input("X")[0])
        count += 1
    return count


def halve_int8_weights(prog) -> int:
    """Bug 1: every int8 weight q -> round(q / 2) with its scale doubled (|q| <= 64)."""
    count = 0
    for op in prog.block.ops:
        if op.type != "dequantize_linear" or not prog.is_param(op.input("X")[0]):
            continue
        name, scale = op.input("X")[0], op.input("Scale")[0]
        q = prog.array(name)
        if q.dtype != np.int8 or op.attr("bit_length") != 8:
            continue
        prog.set_array(name, np.round(q.astype(np.float32) / 2).astype(np.int8))
        prog.set_array(scale, (prog.array(scale) * 2).astype(np.float32))
        count += 1
    return count


def split_activations(prog) -> int:
    """Bugs 2 and 4: hard_swish and leaky_relu as two ops each, so Lite cannot fuse them into
    the conv before them."""
    count = 0
    for op in list(prog.block.ops):
        if op.type not in ("hard_swish", "leaky_relu"):
            continue
        x, out = op.input("X")[0], op.output("Out")[0]
        src = prog.block.var(x)
        part = prog.block.create_var(name=out + ".part", dtype=src.dtype, shape=src.shape)
        if op.type == "hard_swish":
            scale, offset = op.attr("scale"), op.attr("offset")
            if op.attr("threshold") != scale:
                continue  # x * clip(x + o, 0, t) / s is a hard_sigmoid product only when t == s
            ops = [dict(type="hard_sigmoid", inputs={"X": [x]}, outputs={"Out": [part]},
                        attrs={"slope": 1.0 / scale, "offset": offset / scale}),
                   dict(type="elementwise_mul", inputs={"X": [x], "Y": [part]},
                        outputs={"Out": [out]}, attrs={"axis": -1})]
        else:
            alpha = op.attr("alpha")
            if not 0.0 <= alpha <= 1.0:
                continue  # max(x, alpha * x) is leaky_relu only for 0 <= alpha <= 1
            ops = [dict(type="scale", inputs={"X": [x]}, outputs={"Out": [part]},
                        attrs={"scale": float(alpha), "bias": 0.0, "bias_after_scale": True}),
                   dict(type="elementwise_max", inputs={"X": [x], "Y": [part]},
                        outputs={"Out": [out]}, attrs={"axis": -1})]
        prog.replace_op(op, ops)
        count += 1
    return count


def _through_observers(prog, name: str) -> list:
    """The ops reading ``name``, looking through observer-only quantize / dequantize pairs
    (PaddleSlim puts one after almost every op output; Lite folds them into scales)."""
    users = prog.consumers(name)
    if len(users) == 1 and users[0].type == "quantize_linear" and _observer(users[0]):
        deq = prog.consumers(users[0].output("Y")[0])
        if len(deq) == 1 and deq[0].type == "dequantize_linear":
            return _through_observers(prog, deq[0].output("Y")[0])
    return users


def _observer(op) -> bool:
    return op.has_attr("only_observer") and bool(op.attr("only_observer"))


def _has_bias(prog, conv) -> bool:
    """Whether ``conv``'s output goes (through observers) only to an ``elementwise_add`` of a
    per-channel constant, which Lite fuses into the conv as its bias."""
    users = _through_observers(prog, conv.output("Output")[0])
    if len(users) != 1 or users[0].type != "elementwise_add":
        return False
    y = users[0].input("Y")[0]
    return prog.is_param(y) and len(prog.block.var(y).shape) == 1 and users[0].attr("axis") == 1


def zero_bias_depthwise(prog) -> int:
    """Bug 5: every int8 depthwise conv without a bias gets a zero one (conv -> + 0)."""
    producers = prog.producers()
    count = 0
    for op in list(prog.block.ops):
        if op.type != "depthwise_conv2d" or _has_bias(prog, op):
            continue
        dequant = producers.get(op.input("Filter")[0])
        if dequant is None or dequant.type != "dequantize_linear":
            continue  # a float depthwise conv (e.g. one float_ragged_convs gave float weights)
        out = op.output("Output")[0]
        var = prog.block.var(out)
        channels = prog.block.var(op.input("Filter")[0]).shape[0]
        zeros = prog.add_param(out + ".zero_bias", np.zeros([channels], np.float32))
        raw = prog.block.create_var(name=out + ".no_bias", dtype=var.dtype, shape=var.shape)
        op._rename_output(out, raw.name)
        prog.block._insert_op(prog.op_index(op) + 1, type="elementwise_add",
                              inputs={"X": [raw.name], "Y": [zeros.name]},
                              outputs={"Out": [out]}, attrs={"axis": 1})
        count += 1
    return count


def unshare_dequantized_filters(prog) -> int:
    """Each further conv reading one ``dequantize_linear`` of a filter gets a ``dequantize_linear``
    of its own, over copies of the int8 filter, its scale and zero point, and a copy of the bias
    its output is added (through observers). ``opt`` folds each dequantize into its conv and each
    BatchNorm into its conv's filter and bias, so nothing may be shared. Returns the count."""
    count = 0
    for dq in [op for op in prog.block.ops if op.type == "dequantize_linear"
               and prog.is_param(op.input("X")[0])]:
        out = dq.output("Y")[0]
        for conv in [u for u in prog.consumers(out) if u.type in CONVS][1:]:
            count += 1
            ins = {slot: [copy_param(prog, name) for name in dq.input(slot)]
                   for slot in dq.input_names}
            var = prog.block.var(out)
            own = prog.block.create_var(name=f"{out}.copy{count}", dtype=var.dtype, shape=var.shape)
            prog.block._insert_op(prog.op_index(conv), type="dequantize_linear", inputs=ins,
                                  outputs={"Y": [own.name]},
                                  attrs={k: dq.attr(k) for k in dq.attr_names if k not in DEBUG_ATTRS})
            conv._rename_input(out, own.name)
            users = _through_observers(prog, conv.output("Output")[0])
            if len(users) == 1 and users[0].type == "elementwise_add" and prog.is_param(users[0].input("Y")[0]):
                bias = users[0].input("Y")[0]
                users[0]._rename_input(bias, copy_param(prog, bias))
    return count


def apply_x86_int8_workarounds(prog) -> Dict[str, int]:
    """All five fixes on a loaded ``SavedProgram``; returns how many places each changed."""
    return {"float convs (calib tail)": float_ragged_convs(prog),
            "halved int8 weights (int16 saturation)": halve_int8_weights(prog),
            "split activations (fused hard_swish / leaky_relu)": split_activations(prog),
            "zero biases (bias-less int8 depthwise convs)": zero_bias_depthwise(prog)}

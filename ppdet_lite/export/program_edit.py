"""Read and edit a saved inference program (``model.pdmodel`` + ``model.pdiparams``) without the
model code: ``program_ops`` / ``program_op_descs`` / ``read_program_desc`` read the ProgramDesc
(ONNX and Lite checks), ``SavedProgram`` loads it for editing.

    with SavedProgram("output_inference/ppyolo_tiny") as prog:
        fold_bias_reshapes(prog)      # conv + reshape2(bias) + add  ->  conv + add(bias, axis=1)
        compact_names(prog)           # var names -> v0, v1, ... (feeds and fetches kept)
        prog.save("/tmp/ppyolo_tiny_lite")   # also drops debug-only op attributes

Used before post-training quantization (``fold_bias_reshapes``: a conv bias is then a constant
that the quantizer leaves in float, as the BatchNorm-folded biases are) and before a Paddle Lite
conversion: a ``.nb`` stores every variable name and every op attribute of the program, so short
names and no ``op_callstack``/``op_device``/... make it smaller (measured on the 80-class PP-YOLO
Tiny int8 ``.nb``: 1,546,334 -> 1,478,318 bytes with all three). Outputs are unchanged.
"""
import os
import shutil
from typing import Dict, List, Optional

import numpy as np

__all__ = ["SavedProgram", "DEBUG_ATTRS", "fold_bias_reshapes", "unshare_conv_filters",
           "split_swish", "copy_param", "compact_names", "read_program_desc",
           "write_program_desc", "program_op_descs", "program_ops"]

# attributes only Paddle's debugging and training passes read
DEBUG_ATTRS = frozenset({"op_callstack", "op_device", "op_role", "op_role_var", "op_namescope",
                         "with_quant_attr", "only_observer"})


class SavedProgram:
    """An inference model dir loaded into its own scope, for editing; a context manager that
    turns Paddle's static mode on inside and back off on exit."""

    def __init__(self, model_dir: str, model_filename: str = "model"):
        self.model_dir = model_dir
        self.prefix = os.path.join(model_dir, model_filename)
        if not os.path.isfile(self.prefix + ".pdmodel"):
            raise FileNotFoundError(f"{self.prefix}.pdmodel not found: expected an exported "
                                    "inference model dir")

    def __enter__(self) -> "SavedProgram":
        import paddle

        self._was_dynamic = paddle.in_dynamic_mode()
        paddle.enable_static()
        self.scope = paddle.static.Scope()
        self.place = paddle.CPUPlace()
        self.exe = paddle.static.Executor(self.place)
        with paddle.static.scope_guard(self.scope):
            self.program, self.feeds, fetch_vars = paddle.static.load_inference_model(
                self.prefix, self.exe)
        self.fetches = [v.name for v in fetch_vars]
        self.block = self.program.global_block()
        return self

    def __exit__(self, *exc) -> None:
        import paddle

        if self._was_dynamic:
            paddle.disable_static()

    # --- reading and writing tensors -------------------------------------------------------
    def array(self, name: str) -> np.ndarray:
        return np.array(self.scope.find_var(name).get_tensor())

    def set_array(self, name: str, value: np.ndarray) -> None:
        self.scope.var(name).get_tensor().set(np.ascontiguousarray(value), self.place)

    def add_param(self, name: str, value: np.ndarray):
        """A new persistable variable holding ``value``."""
        var = self.block.create_var(name=name, shape=list(value.shape), dtype=str(value.dtype),
                                    persistable=True)
        self.set_array(name, value)
        return var

    def is_param(self, name: str) -> bool:
        return self.block.has_var(name) and self.block.var(name).persistable

    # --- graph queries ---------------------------------------------------------------------
    def producers(self) -> Dict[str, object]:
        return {n: op for op in self.block.ops for n in op.output_arg_names}

    def consumers(self, name: str) -> List[object]:
        return [op for op in self.block.ops if name in op.input_arg_names]

    def op_index(self, op) -> int:
        return next(i for i, o in enumerate(self.block.ops) if o is op)

    def replace_op(self, op, new_ops: List[dict]) -> None:
        """Put ``new_ops`` (``dict(type, inputs, outputs, attrs)``) where ``op`` was."""
        i = self.op_index(op)
        self.block._remove_op(i)
        for k, spec in enumerate(new_ops):
            self.block._insert_op(i + k, **spec)

    # --- saving ----------------------------------------------------------------------------
    def save(self, out_dir: str, strip_attrs: bool = True) -> str:
        """Write ``out_dir``/model.pdmodel + .pdiparams (+ the source's infer_cfg.yml). Unused
        ops and variables are pruned and so are the in-place identity ``scale`` ops each re-save
        appends to the outputs; ``strip_attrs`` drops DEBUG_ATTRS (PaddleSlim needs them)."""
        import paddle

        os.makedirs(out_dir, exist_ok=True)
        prefix = os.path.join(out_dir, "model")
        with paddle.static.scope_guard(self.scope):
            paddle.static.save_inference_model(
                prefix, [self.block.var(n) for n in self.feeds],
                [self.block.var(n) for n in self.fetches], self.exe, program=self.program)
        _strip_program(prefix + ".pdmodel", strip_attrs)
        cfg = os.path.join(self.model_dir, "infer_cfg.yml")
        if os.path.isfile(cfg) and os.path.abspath(out_dir) != os.path.abspath(self.model_dir):
            shutil.copy(cfg, out_dir)
        return out_dir


def read_program_desc(pdmodel: str):
    """The ProgramDesc protobuf of a ``.pdmodel`` file (ops and attributes, no weights)."""
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc()
    with open(pdmodel, "rb") as f:
        desc.ParseFromString(f.read())
    return desc


def program_op_descs(pdmodel: str) -> list:
    """OpDescs of a ProgramDesc ``.pdmodel``, all blocks."""
    return [op for block in read_program_desc(pdmodel).blocks for op in block.ops]


def program_ops(pdmodel: str) -> set:
    """Op types in a ProgramDesc ``.pdmodel``."""
    return {op.type for op in program_op_descs(pdmodel)}


def write_program_desc(pdmodel: str, desc) -> None:
    with open(pdmodel, "wb") as f:
        f.write(desc.SerializeToString())


def _strip_program(pdmodel: str, strip_attrs: bool) -> None:
    """Drop in-place identity ``scale`` ops (X == Out, scale 1, bias 0) and DEBUG_ATTRS."""
    desc = read_program_desc(pdmodel)
    for block in desc.blocks:
        kept = []
        for op in block.ops:
            attrs = {a.name: a for a in op.attrs}
            ins = [a for slot in op.inputs for a in slot.arguments]
            outs = [a for slot in op.outputs for a in slot.arguments]
            identity = "scale" in attrs and attrs["scale"].f == 1.0 and \
                ("bias" not in attrs or attrs["bias"].f == 0.0)
            if op.type == "scale" and ins == outs and identity:
                continue
            if strip_attrs:
                keep_attrs = [a for a in op.attrs if a.name not in DEBUG_ATTRS]
                del op.attrs[:]
                op.attrs.extend(keep_attrs)
            kept.append(op)
        del block.ops[:]
        block.ops.extend(kept)
    write_program_desc(pdmodel, desc)


def fold_bias_reshapes(prog: SavedProgram) -> int:
    """``reshape2(bias [C] -> [1,C,1,1])`` feeding only ``elementwise_add`` ops (Paddle's
    static conv with a bias) -> the adds take ``bias`` itself with ``axis=1``, as a folded
    BatchNorm's bias is added. Returns how many were folded."""
    folded = 0
    for op in list(prog.block.ops):
        if op.type != "reshape2" or op.input("Shape") or op.input("ShapeTensor"):
            continue
        bias, out = op.input("X")[0], op.output("Out")[0]
        if not prog.is_param(bias):
            continue
        value = prog.array(bias)
        users = prog.consumers(out)
        if value.ndim != 1 or list(op.attr("shape")) not in ([1, -1, 1, 1], [1, value.size, 1, 1]) \
                or not users or any(u.type != "elementwise_add" or u.input("Y") != [out]
                                    for u in users):
            continue
        for user in users:
            user._rename_input(out, bias)
            user._set_attr("axis", 1)
        prog.block._remove_op(prog.op_index(op))
        folded += 1
    return folded


def split_swish(prog: SavedProgram) -> int:
    """Every ``swish`` op -> ``sigmoid`` + ``elementwise_mul`` (the same function; Paddle's swish
    has no beta since 2.5): Paddle Lite x86 has no swish kernel, and PaddleSlim's post-training
    quantization quantizes a swish op's input, the conv output before it (EfficientDet-D0's x86
    int8 ``.nb`` then gave a box of IoU 0 against int8 Paddle Inference), but not a sigmoid's
    and a mul's. Returns the count."""
    count = 0
    for op in list(prog.block.ops):
        if op.type != "swish":
            continue
        x, out = op.input("X")[0], op.output("Out")[0]
        src = prog.block.var(x)
        gate = prog.block.create_var(name=out + ".sigmoid", dtype=src.dtype, shape=src.shape)
        prog.replace_op(op, [dict(type="sigmoid", inputs={"X": [x]}, outputs={"Out": [gate]}),
                             dict(type="elementwise_mul", inputs={"X": [x], "Y": [gate]},
                                  outputs={"Out": [out]}, attrs={"axis": -1})])
        count += 1
    return count


def unshare_conv_filters(prog: SavedProgram) -> int:
    """Every conv that reads a filter an earlier conv also reads, and whose output feeds a
    ``batch_norm`` (directly or through its bias add), gets copies of its own of the filter and
    of that bias (``<name>.copy<k>``). Folding BatchNorm into convs (PaddleSlim's
    ``conv_bn_fuse_pass``, oneDNN's conv + bias + BN fuses, Lite's ``opt``) scales the filter and
    shifts the bias in place, once per conv: shared by several convs, each with its own BatchNorm
    (EfficientDet's head: one conv for all five levels, a BatchNorm per level), they would carry
    all of the folds. (Int8 filters read through one ``dequantize_linear``: see
    ``lite_x86_int8.unshare_dequantized_filters``.) Returns the number of convs given copies."""
    seen, copies = set(), 0
    for op in prog.block.ops:
        if op.type not in ("conv2d", "depthwise_conv2d") or not prog.is_param(op.input("Filter")[0]):
            continue
        name = op.input("Filter")[0]
        if name not in seen:
            seen.add(name)
            continue
        bias_add = _bias_add_before_batch_norm(prog, op.output("Output")[0])
        if bias_add is False:
            continue
        _give_copy(prog, op, name)
        if bias_add is not None:
            _give_copy(prog, bias_add, bias_add.input("Y")[0])
        copies += 1
    return copies


def copy_param(prog: SavedProgram, name: str) -> str:
    """A new parameter ``<name>.copy<k>`` (the first free k) holding ``name``'s value; its name."""
    k = 1
    while prog.block.has_var(f"{name}.copy{k}"):
        k += 1
    prog.add_param(f"{name}.copy{k}", prog.array(name))
    return f"{name}.copy{k}"


def _give_copy(prog: SavedProgram, op, name: str) -> None:
    op._rename_input(name, copy_param(prog, name))


def _bias_add_before_batch_norm(prog: SavedProgram, name: str):
    """For a conv output ``name``: its bias ``elementwise_add`` when that feeds a BatchNorm,
    None when the conv feeds one directly, False when no BatchNorm follows."""
    users = prog.consumers(name)
    if len(users) == 1 and users[0].type == "elementwise_add" and prog.is_param(users[0].input("Y")[0]):
        after = prog.consumers(users[0].output("Out")[0])  # conv + bias, then the BatchNorm
        return users[0] if any(u.type == "batch_norm" for u in after) else False
    return None if any(u.type == "batch_norm" for u in users) else False


def compact_names(prog: SavedProgram, prefix: str = "v") -> int:
    """Rename every variable but the feeds and fetches to ``<prefix><i>``; returns the count."""
    keep = set(prog.feeds) | set(prog.fetches) | {"feed", "fetch"}
    names = [n for n in list(prog.block.vars) if n not in keep]
    taken = set(prog.block.vars)
    renamed = 0
    i = 0
    for old in names:
        new = f"{prefix}{i}"
        while new in taken:
            i += 1
            new = f"{prefix}{i}"
        i += 1
        if prog.is_param(old):
            holder: Optional[object] = prog.scope.find_var(old)
            if holder is not None and holder.get_tensor()._is_initialized():
                prog.set_array(new, prog.array(old))
        # in the C++ desc only (vars and every op's arguments): Block._rename_var re-syncs the
        # whole Python block after each rename, quadratic (181 s for an int8 EfficientDet-D0)
        prog.block.desc._rename_var(old.encode(), new.encode())
        taken.add(new)
        renamed += 1
    prog.block._sync_with_cpp()  # once: drops the old names, adds the new ones
    return renamed

"""The one Paddle Inference predictor factory for exported model dirs, and a single run helper.

``load_predictor`` takes PaddleDetection's deploy settings (device, TensorRT run modes, oneDNN);
``inference_predictor`` is its plain CPU form used by the ONNX check, slim evaluations and tests.
Building a predictor configures only that predictor: the process's paddle device is untouched.
"""
import os
import struct
from typing import Dict, List, Tuple

import numpy as np

__all__ = ["RUN_MODES", "DEVICES", "model_files", "load_predictor", "inference_predictor",
           "run_inference"]

RUN_MODES = ("paddle", "trt_fp32", "trt_fp16", "trt_int8")
DEVICES = ("CPU", "GPU")


def model_files(model_dir: str) -> Tuple[str, str]:
    """(program file, params file) in ``model_dir``: ``model.*`` first, else ``inference.*``;
    both checked (``check_model_files``) so that a broken file is an error, not a crash."""
    for prefix in ("model", "inference"):
        prog = os.path.join(model_dir, prefix + ".pdmodel")
        if os.path.isfile(prog):
            params = os.path.join(model_dir, prefix + ".pdiparams")
            check_model_files(prog, params)
            return prog, params
    raise FileNotFoundError(f"no model.pdmodel or inference.pdmodel in {model_dir}: export the "
                            "model first with tools/export_model.py")


# bytes per element of the VarType dtypes a parameter file holds (framework.proto)
_DTYPE_BYTES = {0: 1, 1: 2, 2: 4, 3: 8, 4: 2, 5: 4, 6: 8, 20: 1, 21: 1, 22: 2}


def check_model_files(prog: str, params: str) -> None:
    """``ValueError`` naming the file when the program does not parse as a Paddle ProgramDesc with
    feed and fetch ops, or the parameter file is missing, does not parse to its end, or holds
    another number of tensors than the program's parameters: Paddle Inference would crash the
    process (segfault) or fail naming no file."""
    from google.protobuf.message import DecodeError

    from .program_edit import read_program_desc

    try:
        desc = read_program_desc(prog)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ValueError(f"{prog}: not a Paddle program (corrupt or truncated: {e}); export the model again")
    ops = {op.type for block in desc.blocks for op in block.ops}
    if not desc.blocks or not {"feed", "fetch"} <= ops:
        raise ValueError(f"{prog}: not an exported inference program (no feed/fetch ops); export it with "
                         "tools/export_model.py")
    persistable = sum(1 for var in desc.blocks[0].vars
                      if var.persistable and var.name not in ("feed", "fetch"))
    if not os.path.isfile(params):
        raise ValueError(f"{params}: missing; export the model again")
    count, why = params_tensors(params)
    if why or count != persistable:
        raise ValueError(f"{params}: " + (why or f"{count} tensors, but the program has {persistable} "
                         "parameters: from another export") + "; export the model again")


def params_tensors(params: str) -> Tuple[int, str]:
    """(tensors, '') when ``params`` is a whole combined parameter file (``paddle.jit.save``'s:
    per tensor a version, its LoD, a TensorDesc and the raw data, nothing after the last), else
    (tensors read, what is wrong)."""
    from google.protobuf.message import DecodeError
    from paddle.base.proto import framework_pb2

    size, count = os.path.getsize(params), 0
    with open(params, "rb") as f:
        while f.tell() < size:
            try:
                head = f.read(12)
                version, lod_levels = struct.unpack("<IQ", head)
                for _ in range(lod_levels):
                    f.seek(struct.unpack("<Q", f.read(8))[0], os.SEEK_CUR)
                version2, desc_size = struct.unpack("<Ii", f.read(8))
                tensor = framework_pb2.VarType.TensorDesc()
                tensor.ParseFromString(f.read(desc_size))
                nbytes = int(np.prod(list(tensor.dims))) * _DTYPE_BYTES[tensor.data_type]
            except (struct.error, DecodeError, KeyError, ValueError, OverflowError):
                return count, f"tensor {count + 1} at byte {f.tell()} does not parse (truncated or corrupt)"
            if version or version2 or desc_size < 0 or f.tell() + nbytes > size:
                return count, f"tensor {count + 1} at byte {f.tell()}: bad header or data past the end " \
                              "(truncated or corrupt)"
            f.seek(nbytes, os.SEEK_CUR)
            count += 1
    return count, ""


def load_predictor(model_dir: str, run_mode: str = "paddle", batch_size: int = 1,
                   device: str = "CPU", min_subgraph_size: int = 3,
                   use_dynamic_shape: bool = False, trt_min_shape: int = 1,
                   trt_max_shape: int = 1280, trt_opt_shape: int = 640,
                   trt_calib_mode: bool = False, cpu_threads: int = 1,
                   enable_mkldnn: bool = False, enable_mkldnn_bfloat16: bool = False):
    """A Paddle Inference predictor with PaddleDetection's ``load_predictor`` settings.

    ``run_mode`` trt_* needs ``device`` GPU; the TensorRT dynamic shapes are square images of
    ``trt_min/max/opt_shape`` pixels. Returns (predictor, config).
    """
    from paddle.inference import Config, create_predictor

    device = device.upper()
    if device not in DEVICES:
        raise ValueError(f"--device {device!r}: expected one of {DEVICES}")
    if run_mode not in RUN_MODES:
        raise ValueError(f"--run_mode {run_mode!r}: expected one of {RUN_MODES}")
    if run_mode != "paddle" and device != "GPU":
        raise ValueError(f"--run_mode {run_mode} uses TensorRT and needs --device GPU")
    config = Config(*model_files(model_dir))
    if device == "GPU":
        config.enable_use_gpu(200, 0)  # initial pool MB, device id
        config.switch_ir_optim(True)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(cpu_threads)
        if enable_mkldnn:
            config.set_mkldnn_cache_capacity(10)  # bounded shape cache: no leak on varying shapes
            config.enable_mkldnn()
            if enable_mkldnn_bfloat16:
                config.enable_mkldnn_bfloat16()
    if run_mode != "paddle":
        precision = {"trt_fp32": Config.Precision.Float32, "trt_fp16": Config.Precision.Half,
                     "trt_int8": Config.Precision.Int8}[run_mode]
        config.enable_tensorrt_engine(workspace_size=(1 << 25) * batch_size,
                                      max_batch_size=batch_size,
                                      min_subgraph_size=min_subgraph_size,
                                      precision_mode=precision, use_static=False,
                                      use_calib_mode=trt_calib_mode)
        if use_dynamic_shape:
            shapes = [{"image": [batch_size, 3, s, s], "scale_factor": [batch_size, 2]}
                      for s in (trt_min_shape, trt_max_shape, trt_opt_shape)]
            config.set_trt_dynamic_shape_info(*shapes)
    config.disable_glog_info()
    config.enable_memory_optim()
    config.switch_use_feed_fetch_ops(False)
    return create_predictor(config), config


def inference_predictor(model_dir: str, cpu_threads: int = 1, enable_mkldnn: bool = False):
    """A CPU Paddle Inference predictor over the exported model in ``model_dir``."""
    return load_predictor(model_dir, cpu_threads=cpu_threads, enable_mkldnn=enable_mkldnn)[0]


def run_inference(predictor, inputs: Dict[str, np.ndarray]) -> List[np.ndarray]:
    """Feed the inputs the predictor takes, run once, return its outputs (``bbox``, ``bbox_num``)."""
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(np.ascontiguousarray(inputs[name], np.float32))
    predictor.run()
    return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]

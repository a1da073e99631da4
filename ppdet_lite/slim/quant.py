"""INT8 quantization (PaddleSlim) and checks of the result in Paddle Inference.

- ``QAT``: quantization-aware training, PaddleSlim's dygraph ``QAT`` with PaddleDetection's
  ``quant_config`` keys (``activation_preprocess_type: PACT`` for PACT clipping). The head's output
  convs stay in float (``skip_quant``). ``export_quantized`` writes an inference model dir.
- ``PTQ``: post-training quantization of an exported FP32 inference model with
  ``paddleslim.quant.quant_post_static``, calibrated on ``quant_batch_num`` batches. Conv biases
  are folded to constants first (``fold_bias_reshapes``) so they stay float, as Lite adds them,
  and swish is written as ``x * sigmoid(x)`` (``split_swish``: the conv output stays float); with
  ``fuse``, a conv filter and bias shared by convs with BatchNorms of their own are copied
  per conv first (``unshare_conv_filters``: EfficientDet's head), so each BatchNorm folds into
  its own.

Both write PaddleDetection's deploy layout (``model.pdmodel``, ``model.pdiparams`` with int8
weights, ``infer_cfg.yml``): Paddle Inference runs it, ``ppdet_lite.export.lite`` turns it into a
Paddle Lite ``.nb``. Fake-quantized dygraph accuracy and engine accuracy can differ, so
``evaluate_inference_model`` measures mAP through Paddle Inference itself.
"""
import contextlib
import copy
import difflib
import os
import shutil
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn

from ..core.errors import ConfigError
from ..core.registry import register
from ..export.inference import inference_predictor, run_inference
from ..export.infer_cfg import image_shape_of, write_infer_cfg
from ..export.jit import input_spec, set_export_mode
from ..export.program_edit import SavedProgram, fold_bias_reshapes, split_swish, unshare_conv_filters
from ..utils.logger import get_logger

logger = get_logger(__name__)

__all__ = ["QAT", "PTQ", "export_quantized", "calibration_batches", "evaluate_inference_model",
           "random_inputs", "inference_latency", "model_size"]

# PaddleSlim dygraph QAT config keys (PaddleDetection's quant_config) and their types
QAT_KEYS = {"weight_preprocess_type": (str, type(None)), "activation_preprocess_type": (str, type(None)),
            "weight_quantize_type": str, "activation_quantize_type": str, "weight_bits": int,
            "activation_bits": int, "dtype": str, "window_size": int, "moving_rate": float,
            "quantizable_layer_type": list, "fuse_conv_bn": bool, "onnx_format": bool}
# PaddleDetection's dygraph PTQ quantizer names → quant_post_static arguments
ACT_ALGOS = {"HistQuantizer": "hist", "KLQuantizer": "KL", "AbsmaxQuantizer": "abs_max",
             "AvgQuantizer": "avg", "MSEQuantizer": "mse", "hist": "hist", "KL": "KL",
             "abs_max": "abs_max", "avg": "avg", "mse": "mse"}
WEIGHT_TYPES = {"PerChannelAbsmaxQuantizer": "channel_wise_abs_max", "AbsmaxQuantizer": "abs_max",
                "channel_wise_abs_max": "channel_wise_abs_max", "abs_max": "abs_max"}


@register
class QAT:
    """``QAT(quant_config, print_model)``; ``qat(model)`` quantizes ``model`` in place."""

    def __init__(self, quant_config: Optional[Dict[str, Any]] = None, print_model: bool = False):
        config = dict(quant_config or {})
        for key, value in config.items():
            if key not in QAT_KEYS:
                raise ConfigError(f"QAT.quant_config: unknown key {key!r}; closest: "
                                  f"{difflib.get_close_matches(key, QAT_KEYS, 3) or sorted(QAT_KEYS)}")
            if QAT_KEYS[key] is float and isinstance(value, int):
                config[key] = float(value)
            elif not isinstance(config[key], QAT_KEYS[key]):
                raise ConfigError(f"QAT.quant_config.{key}: {value!r} has the wrong type")
        if config.get("activation_preprocess_type") not in (None, "PACT"):
            raise ConfigError(f"QAT.quant_config.activation_preprocess_type "
                              f"{config['activation_preprocess_type']!r}: expected PACT or null")
        self.quant_config = config
        self.print_model = print_model
        self.quanter = None

    @property
    def pact(self) -> bool:
        return self.quant_config.get("activation_preprocess_type") == "PACT"

    def __call__(self, model: nn.Layer) -> nn.Layer:
        import paddleslim

        self.quanter = paddleslim.dygraph.quant.QAT(config=self.quant_config)
        self.quanter.quantize(model)
        if self.print_model:
            logger.info(f"quantized model:\n{model}")
        return model

    def save_quantized_model(self, model: nn.Layer, path: str, input_spec=None) -> None:
        """Save ``model`` (quantized by this QAT) as an int8 inference program at ``path``.*.

        PACT layers are dropped on the way (PaddleSlim rebuilds the model without them)."""
        if self.quanter is None:
            raise RuntimeError("QAT.save_quantized_model: call qat(model) first")
        training = model.training
        model.eval()
        try:
            self.quanter.save_quantized_model(model, path, input_spec=input_spec)
        finally:
            if not paddle.in_dynamic_mode():  # PaddleSlim's PACT removal leaves static mode on
                paddle.disable_static()
            if training:
                model.train()


def export_quantized(cfg: Dict[str, Any], model: nn.Layer, qat: QAT, save_dir: str,
                     labels: Optional[List[str]] = None) -> str:
    """Write a QAT ``model`` (a copy of it) as an inference model dir: deploy layout, the
    ``export.benchmark / post_process / nms`` knobs and the input spec of ``export_model``;
    returns ``save_dir``."""
    export = dict(cfg.get("export") or {})
    if export.get("fuse_conv_bn", False):
        raise ConfigError("export.fuse_conv_bn with a QAT model: the quantized convs are not "
                          "plain Conv2D; fold BatchNorm with QAT.quant_config.fuse_conv_bn: true")
    os.makedirs(save_dir, exist_ok=True)
    image_shape = image_shape_of(cfg)
    spec = [input_spec(image_shape)]
    model = copy.deepcopy(model)
    # PaddleSlim saves a PACT model through the copy it took before quantizing: prepare both
    for m in (model, getattr(qat.quanter, "_model", None)):
        if m is not None:
            set_export_mode(m, export)
            paddle.jit.to_static(m, input_spec=spec, full_graph=True)  # AST capture, as export does
    write_infer_cfg(cfg, save_dir, image_shape, labels)
    # no input_spec here: Paddle would re-wrap the model for SOT capture, which ignores it
    qat.save_quantized_model(model, os.path.join(save_dir, "model"))
    logger.info(f"exported quantized model {save_dir} ({model_size(save_dir) / 2**20:.2f} MiB)")
    return save_dir


@register
class PTQ:
    """``PTQ(ptq_config, quant_batch_num, output_dir, fuse, fuse_list)`` (PaddleDetection's keys).

    ``ptq_config``: ``activation_quantizer`` (HistQuantizer | KLQuantizer | AbsmaxQuantizer |
    AvgQuantizer | MSEQuantizer), ``weight_quantizer`` (PerChannelAbsmaxQuantizer |
    AbsmaxQuantizer), ``hist_percent``, ``upsample_bins`` (PaddleSlim's dygraph histogram only;
    ignored here), ``onnx_format``, ``skip_tensor_list``. ``fuse`` folds BatchNorm into convs first.
    """

    def __init__(self, ptq_config: Optional[Dict[str, Any]] = None, quant_batch_num: int = 10,
                 output_dir: str = "output_inference", fuse: bool = True, fuse_list=None):
        cfg = dict(ptq_config or {})
        act = cfg.pop("activation_quantizer", "HistQuantizer")
        weight = cfg.pop("weight_quantizer", "PerChannelAbsmaxQuantizer")
        if act not in ACT_ALGOS:
            raise ConfigError(f"PTQ.ptq_config.activation_quantizer {act!r}: expected one of "
                              f"{[k for k in ACT_ALGOS if k.endswith('Quantizer')]}")
        if weight not in WEIGHT_TYPES:
            raise ConfigError(f"PTQ.ptq_config.weight_quantizer {weight!r}: expected one of "
                              f"{[k for k in WEIGHT_TYPES if k.endswith('Quantizer')]}")
        cfg.pop("upsample_bins", None)
        self.kwargs = {"algo": ACT_ALGOS[act], "weight_quantize_type": WEIGHT_TYPES[weight],
                       "hist_percent": float(cfg.pop("hist_percent", 0.9999)),
                       "onnx_format": bool(cfg.pop("onnx_format", True)),
                       "skip_tensor_list": cfg.pop("skip_tensor_list", None),
                       "optimize_model": bool(fuse)}
        if cfg:
            raise ConfigError(f"PTQ.ptq_config: unknown keys {sorted(cfg)}; known: activation_quantizer, "
                              "weight_quantizer, hist_percent, upsample_bins, onnx_format, skip_tensor_list")
        if int(quant_batch_num) < 1:
            raise ConfigError(f"PTQ.quant_batch_num {quant_batch_num}: needs at least 1 batch")
        self.quant_batch_num = int(quant_batch_num)
        self.output_dir = output_dir
        self.fuse, self.fuse_list = fuse, fuse_list

    def quantize(self, fp32_dir: str, save_dir: str, batches: List[Dict[str, np.ndarray]]) -> str:
        """Quantize the inference model in ``fp32_dir`` into ``save_dir`` (``infer_cfg.yml``
        copied), calibrating on ``batches`` (dicts of input arrays). Returns ``save_dir``."""
        from paddleslim.quant import quant_post_static

        if not batches:
            raise ConfigError("PTQ: no calibration batches (is the calibration dataset empty?)")
        names = inference_predictor(fp32_dir).get_input_names()
        samples = [[b[n][i] for n in names] for b in batches[: self.quant_batch_num]
                   for i in range(len(b[names[0]]))]
        batch_size = len(batches[0][names[0]])

        class Calibration(paddle.io.Dataset):
            def __len__(self):
                return len(samples)

            def __getitem__(self, i):
                return tuple(samples[i])

        with tempfile.TemporaryDirectory(prefix="ptq_fp32_") as folded:
            # conv biases as constants the quantizer leaves in float (Lite adds them in float)
            with SavedProgram(fp32_dir) as prog:
                fold_bias_reshapes(prog)
                split_swish(prog)  # conv outputs stay float through x * sigmoid(x)
                if self.fuse:  # the BatchNorm fold scales filters in place: one per BatchNorm
                    copies = unshare_conv_filters(prog)
                    if copies:
                        logger.info(f"{copies} convs get their own copy of a shared filter "
                                    "(each folds its own BatchNorm)")
                prog.save(folded, strip_attrs=False)
            paddle.enable_static()
            try:  # feeds in a program of their own: the default one outlives this call
                with paddle.static.program_guard(paddle.static.Program(), paddle.static.Program()):
                    feeds = [paddle.static.data(n, [-1] + list(batches[0][n].shape[1:]),
                                                "float32") for n in names]
                loader = paddle.io.DataLoader(Calibration(), feed_list=feeds, return_list=False,
                                              batch_size=batch_size, shuffle=False, drop_last=False)
                with _linear_time_link_to():
                    quant_post_static(paddle.static.Executor(paddle.CPUPlace()), folded, save_dir,
                                      data_loader=loader, model_filename="model.pdmodel",
                                      params_filename="model.pdiparams",
                                      batch_nums=self.quant_batch_num, **self.kwargs)
            finally:
                paddle.disable_static()
        shutil.copy(os.path.join(fp32_dir, "infer_cfg.yml"), save_dir)
        logger.info(f"post-quantized {fp32_dir} -> {save_dir} on {len(samples)} images "
                    f"({model_size(save_dir) / 2**20:.2f} MiB)")
        return save_dir


@contextlib.contextmanager
def _linear_time_link_to():
    """Paddle 2.6's ``IrGraph.link_to`` asserts both nodes are in ``graph.nodes()``, a set of
    every node built anew on each call, so the quant passes' thousands of links take time
    quadratic in the graph: EfficientDet-D0 (about 10k nodes) spent over 10 minutes there. The
    nodes always come from the same graph; this links them without the check."""
    from paddle.base.framework import IrGraph

    checked = IrGraph.link_to

    def link_to(self, node_in, node_out):
        node_in.append_output(node_out)
        node_out.append_input(node_in)

    IrGraph.link_to = link_to
    try:
        yield
    finally:
        IrGraph.link_to = checked


def calibration_batches(cfg: Dict[str, Any], num_batches: int, source: str = "TrainDataset",
                        batch_size: Optional[int] = None) -> List[Dict[str, np.ndarray]]:
    """The first ``num_batches`` batches of ``source`` through EvalReader's deterministic
    transforms, as dicts of ``image`` / ``im_shape`` / ``scale_factor`` arrays. ``source`` is a
    dataset key of ``cfg`` (``TrainDataset``, ``EvalDataset``) or a folder of images."""
    from ..core.config import section
    from ..data.image_folder import ImageFolder
    from ..data.loader import build_dataloader
    from ..data.builder import parsed_dataset

    if source in ("TrainDataset", "EvalDataset", "TestDataset"):
        images = [r["im_file"] for r in parsed_dataset(cfg, source).roidbs]
    elif os.path.isdir(source):
        images = [source]
    else:
        raise ConfigError(f"calibration source {source!r}: expected TrainDataset, EvalDataset or "
                          "an existing folder of images")
    ds = ImageFolder()  # images only: the annotations play no part in calibration
    ds.set_images(images)
    loader = build_dataloader(section(cfg, "EvalReader"), ds, int(cfg.get("num_classes", 80)),
                              "eval", worker_num=0, batch_size=batch_size, shuffle=False)
    batches = []
    for batch in loader:
        batches.append({k: np.asarray(batch[k]) for k in ("image", "im_shape", "scale_factor")})
        if len(batches) >= num_batches:
            break
    return batches


def evaluate_inference_model(model_dir: str, cfg: Dict[str, Any], output_eval: Optional[str] = None,
                             enable_mkldnn: bool = False) -> Dict[str, float]:
    """COCO mAP of an exported model run by Paddle Inference on ``cfg``'s EvalDataset (EvalReader
    preprocessing, as in training-time evaluation)."""
    from ..core.config import section
    from ..data.loader import build_dataloader
    from ..data.builder import parsed_dataset
    from ..metrics.coco_metric import COCOMetric

    ds = parsed_dataset(cfg, "EvalDataset")
    loader = build_dataloader(section(cfg, "EvalReader"), ds, int(cfg.get("num_classes", 80)),
                              "eval", worker_num=0)
    metric = COCOMetric.for_dataset(ds, output_eval)
    predictor = inference_predictor(model_dir, enable_mkldnn=enable_mkldnn)
    for batch in loader:
        bbox, bbox_num = run_inference(predictor, {k: np.asarray(v) for k, v in batch.items()
                                                   if k in ("image", "im_shape", "scale_factor")})[:2]
        metric.update({"bbox": bbox, "bbox_num": bbox_num}, np.asarray(batch["im_id"]))
    metrics = metric.accumulate()
    metrics.pop("_eval", None)
    return metrics


def random_inputs(image_shape: Sequence[int]) -> Dict[str, np.ndarray]:
    """Batch-1 model inputs for a random ``image_shape`` (C, H, W) image."""
    c, h, w = image_shape
    return {"image": np.random.RandomState(0).rand(1, c, h, w).astype(np.float32),
            "im_shape": np.array([[h, w]], np.float32), "scale_factor": np.ones((1, 2), np.float32)}


def inference_latency(model_dirs: Sequence[str], inputs: Dict[str, np.ndarray], cpu_threads: int = 1,
                      enable_mkldnn: bool = False, warmup: int = 20, rounds: int = 5,
                      runs: int = 20) -> List[float]:
    """Median milliseconds of one ``predictor.run()`` on ``inputs`` for each model dir.

    The models take turns (``rounds`` × ``runs`` timed runs each, after ``warmup``), so a change
    in machine load during the measurement affects all of them alike."""
    predictors = [inference_predictor(d, cpu_threads, enable_mkldnn) for d in model_dirs]
    times: List[List[float]] = [[] for _ in predictors]
    for p in predictors:
        for _ in range(warmup):
            run_inference(p, inputs)
    for _ in range(rounds):
        for p, t in zip(predictors, times):
            run_inference(p, inputs)
            for _ in range(runs):
                tic = time.perf_counter()
                p.run()
                t.append(time.perf_counter() - tic)
    return [float(np.median(t) * 1000) for t in times]


def model_size(model_dir: str) -> int:
    """Bytes of ``model.pdmodel`` + ``model.pdiparams``."""
    return sum(os.path.getsize(os.path.join(model_dir, f)) for f in ("model.pdmodel", "model.pdiparams"))

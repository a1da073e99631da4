"""Paddle Inference detector over an exported model dir (PaddleDetection's deploy format).

A model dir holds ``model.pdmodel`` + ``model.pdiparams`` (or ``inference.*``) and ``infer_cfg.yml``
(``arch``, ``min_subgraph_size``, ``use_dynamic_shape``, ``Preprocess``, ``label_list``). Both
PaddleDetection's exporter and ours write it. Inputs: ``image [N,3,H,W]``, ``im_shape [N,2]``,
``scale_factor [N,2]`` (float32); outputs: ``bbox [M,6]`` (class, score, x1, y1, x2, y2 in original
image pixels) and ``bbox_num [N]``.

    det = DetectorPredictor("output_inference/ppyolo_tiny_650e_coco")
    results = det.predict(["a.jpg", rgb_array])   # one dict per image, see ``split_results``
"""
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from postprocess import split_results  # noqa: E402
from preprocess import ImageLike, batch_inputs, build_ops, preprocess  # noqa: E402

RUN_MODES = ("paddle", "trt_fp32", "trt_fp16", "trt_int8")
DEVICES = ("CPU", "GPU")


@dataclass
class DeployConfig:
    """What ``infer_cfg.yml`` says about the model: preprocessing, labels, TensorRT hints."""
    model_dir: str
    arch: str
    preprocess: List[dict]
    label_list: List[str]
    min_subgraph_size: int = 3
    use_dynamic_shape: bool = False
    draw_threshold: float = 0.5
    raw: Dict = field(default_factory=dict)

    @classmethod
    def load(cls, model_dir: str) -> "DeployConfig":
        path = os.path.join(model_dir, "infer_cfg.yml")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: --model_dir must be a directory written by "
                                    "tools/export_model.py (model.pdmodel, model.pdiparams, "
                                    "infer_cfg.yml)")
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
        missing = [k for k in ("arch", "Preprocess", "label_list") if k not in cfg]
        if missing:
            raise ValueError(f"{path}: missing key(s) {missing}; re-export the model with "
                             "tools/export_model.py")
        return cls(model_dir=model_dir, arch=cfg["arch"], preprocess=cfg["Preprocess"],
                   label_list=[str(x) for x in cfg["label_list"]],
                   min_subgraph_size=int(cfg.get("min_subgraph_size", 3)),
                   use_dynamic_shape=bool(cfg.get("use_dynamic_shape", False)),
                   draw_threshold=float(cfg.get("draw_threshold", 0.5)), raw=cfg)

    @property
    def input_size(self) -> Optional[List[int]]:
        """[h, w] the Resize op produces, or None when there is no Resize."""
        for op in self.preprocess:
            if op.get("type") == "Resize":
                size = op["target_size"]
                return [size, size] if isinstance(size, int) else list(size)
        return None


def model_files(model_dir: str) -> Tuple[str, str]:
    """(program file, params file) in ``model_dir``: ``model.*`` first, else ``inference.*``."""
    for prefix in ("model", "inference"):
        prog = os.path.join(model_dir, prefix + ".pdmodel")
        if os.path.isfile(prog):
            return prog, os.path.join(model_dir, prefix + ".pdiparams")
    raise FileNotFoundError(f"no model.pdmodel or inference.pdmodel in {model_dir}: export the "
                            "model first with tools/export_model.py")


def load_predictor(model_dir: str, run_mode: str = "paddle", batch_size: int = 1,
                   device: str = "CPU", min_subgraph_size: int = 3,
                   use_dynamic_shape: bool = False, trt_min_shape: int = 1,
                   trt_max_shape: int = 1280, trt_opt_shape: int = 640,
                   trt_calib_mode: bool = False, cpu_threads: int = 1,
                   enable_mkldnn: bool = False, enable_mkldnn_bfloat16: bool = False):
    """A Paddle Inference predictor with PaddleDetection's ``load_predictor`` settings.

    Returns (predictor, config).
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


class DetectorPredictor:
    """Load an exported detector once; ``predict(images) -> [{"boxes": [K,6]}, ...]``.

    Not thread-safe (Paddle predictors are not): give each thread its own ``clone()``.
    """

    def __init__(self, model_dir: str, device: str = "CPU", run_mode: str = "paddle",
                 batch_size: int = 1, cpu_threads: int = 1, enable_mkldnn: bool = False,
                 enable_mkldnn_bfloat16: bool = False, threshold: float = 0.5,
                 trt_min_shape: int = 1, trt_max_shape: int = 1280, trt_opt_shape: int = 640,
                 trt_calib_mode: bool = False):
        self.cfg = DeployConfig.load(model_dir)
        self.threshold = threshold
        self.batch_size = batch_size
        self.ops = build_ops(self.cfg.preprocess)
        self.predictor, self.config = load_predictor(
            model_dir, run_mode=run_mode, batch_size=batch_size, device=device,
            min_subgraph_size=self.cfg.min_subgraph_size,
            use_dynamic_shape=self.cfg.use_dynamic_shape, trt_min_shape=trt_min_shape,
            trt_max_shape=trt_max_shape, trt_opt_shape=trt_opt_shape,
            trt_calib_mode=trt_calib_mode, cpu_threads=cpu_threads,
            enable_mkldnn=enable_mkldnn, enable_mkldnn_bfloat16=enable_mkldnn_bfloat16)
        self.input_names = self.predictor.get_input_names()
        self.output_names = self.predictor.get_output_names()

    @property
    def labels(self) -> List[str]:
        return self.cfg.label_list

    def clone(self) -> "DetectorPredictor":
        """A predictor sharing this one's weights (``predictor.clone()``), for another thread."""
        twin = object.__new__(DetectorPredictor)
        twin.__dict__.update(self.__dict__)
        twin.predictor = self.predictor.clone()
        return twin

    def preprocess(self, images: Sequence[ImageLike]) -> Dict[str, np.ndarray]:
        """Decode + preprocess, then feed the predictor. Returns the input arrays."""
        ims, infos = zip(*(preprocess(im, self.ops) for im in images))
        inputs = batch_inputs(list(ims), list(infos))
        for name in self.input_names:  # pruned exports may take only some of the three
            key = "image" if name == "x" else name
            self.predictor.get_input_handle(name).copy_from_cpu(inputs[key])
        return inputs

    def run(self, repeats: int = 1) -> List[np.ndarray]:
        """Run the fed inputs ``repeats`` times; the outputs of the last run (``bbox``,
        ``bbox_num`` for a full export; raw head maps for an ``export.benchmark`` one)."""
        for _ in range(max(repeats, 1)):  # outputs are copied out every run, as PaddleDetection
            self.predictor.run()
            outputs = [self.predictor.get_output_handle(n).copy_to_cpu() for n in self.output_names]
        return outputs

    def postprocess(self, outputs: List[np.ndarray], threshold: Optional[float] = None,
                    num_images: int = 1) -> List[dict]:
        """``run()`` outputs -> one ``{"boxes": [K,6]}`` per image, rows above ``threshold``."""
        threshold = self.threshold if threshold is None else threshold
        bbox = outputs[0]
        if bbox.ndim != 2 or bbox.shape[-1] != 6:
            raise ValueError(f"{self.cfg.model_dir}: first output has shape {bbox.shape}, not "
                             "[M,6]; was it exported with export.benchmark/post_process off? Such "
                             "models only support --run_benchmark")
        bbox_num = outputs[1] if len(outputs) > 1 else np.array([len(bbox)] * num_images)
        return split_results(bbox, bbox_num, threshold)

    def predict(self, images: Sequence[ImageLike], threshold: Optional[float] = None) -> List[dict]:
        """Images (paths, encoded bytes or HWC RGB uint8 arrays) -> one ``{"boxes": [K,6]}`` each."""
        results = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i:i + self.batch_size]
            self.preprocess(chunk)
            results += self.postprocess(self.run(), threshold, len(chunk))
        return results

"""Paddle Inference detector over an exported model dir (PaddleDetection's deploy format).

A model dir holds ``model.pdmodel`` + ``model.pdiparams`` (or ``inference.*``) and ``infer_cfg.yml``
(``arch``, ``min_subgraph_size``, ``use_dynamic_shape``, ``Preprocess``, ``label_list``). Both
PaddleDetection's exporter and ours write it. Inputs: ``image [N,3,H,W]``, ``im_shape [N,2]``,
``scale_factor [N,2]`` (float32); outputs: ``bbox [M,6]`` (class, score, x1, y1, x2, y2 in original
image pixels) and ``bbox_num [N]``.

    det = DetectorPredictor("output_inference/ppyolo_tiny_650e_coco")
    results = det.predict(["a.jpg", rgb_array])   # one ppdet_lite.runtime.result.Detections each

Preprocessing, the threshold rule and the result record are ``ppdet_lite.runtime``'s (the same as
``ppdet_lite.Detector`` and the Lite runner); the predictor is ``ppdet_lite.export.inference``'s.
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml

from ..export.inference import load_predictor
from ..runtime.images import ImageLike
from ..runtime.preprocess import batch_inputs, build_ops, preprocess
from ..runtime.result import Detections, split_detections


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
        if not isinstance(cfg, dict):
            raise ValueError(f"{path}: holds a {type(cfg).__name__}, not the mapping an export writes "
                             "(arch, Preprocess, label_list, ...); re-export the model with tools/export_model.py")
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
        """[h, w] the (LetterBox)Resize op produces, or None when there is none."""
        for op in self.preprocess:
            if op.get("type") in ("Resize", "LetterBoxResize"):
                size = op["target_size"]
                return [size, size] if isinstance(size, int) else list(size)
        return None


class DetectorPredictor:
    """Load an exported detector once; ``predict(images) -> [Detections, ...]``.

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
        self.ops = build_ops(self.cfg.preprocess, os.path.join(model_dir, "infer_cfg.yml"))
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
                    num_images: int = 1) -> List[Detections]:
        """``run()`` outputs -> one ``Detections`` per image (``score >= threshold``)."""
        threshold = self.threshold if threshold is None else threshold
        bbox = outputs[0]
        if bbox.ndim != 2 or bbox.shape[-1] != 6:
            raise ValueError(f"{self.cfg.model_dir}: first output has shape {bbox.shape}, not "
                             "[M,6]; was it exported with export.benchmark/post_process off? Such "
                             "models only support --run_benchmark")
        bbox_num = outputs[1] if len(outputs) > 1 else np.array([len(bbox)] * num_images)
        return split_detections(bbox, bbox_num, threshold, self.labels)

    def predict(self, images: Sequence[ImageLike],
                threshold: Optional[float] = None) -> List[Detections]:
        """Images (paths, encoded bytes or HWC RGB uint8 arrays) -> one ``Detections`` each."""
        results = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i:i + self.batch_size]
            self.preprocess(chunk)
            results += self.postprocess(self.run(), threshold, len(chunk))
        return results

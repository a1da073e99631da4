"""Hooks that report on a run: the model's size before training (``print_params``,
``print_flops``) and, after it, the summary with the best model's prediction on an example image."""
import os

import numpy as np
import paddle

from ..utils.logger import get_logger
from .hooks import HookBase
from .model_stats import count_flops, count_params

logger = get_logger(__name__)

__all__ = ["ModelInfoHook", "SummaryHook"]


class ModelInfoHook(HookBase):
    """Before training, log the trainable parameters (``print_params``) and the FLOPs of one
    image of the first training batch (``print_flops``; PaddleSlim's count, post-process excluded)."""

    def __init__(self, params: bool, flops: bool):
        self.params, self.flops = bool(params), bool(flops)

    def before_train(self) -> None:
        if self.trainer.rank == 0:
            self.log(self.trainer.model, next(iter(self.trainer.loader))["image"].shape[1:])

    def log(self, model: paddle.nn.Layer, image_shape) -> None:
        if self.params:
            logger.info(f"Model Params: {count_params(model) / 1e6:.6f} M (trainable)")
        if self.flops:
            shape = [int(s) for s in image_shape]
            logger.info(f"Model FLOPs: {count_flops(model, shape) / 1e9:.6f} G (image shape {[1] + shape})")


class SummaryHook(HookBase):
    """After a finished run, rank 0 prints mAP, where the weights are and, with validation, draws
    the best model's prediction on the first validation image (``example_prediction.jpg``)."""

    def after_train(self) -> None:
        t = self.trainer
        if not t.finished or t.rank != 0:
            return
        lines = [f"weights: {os.path.join(t.save_dir, 'model_final.pdparams')}"]
        metrics = t.metrics
        if t.validate and metrics:
            best_path = os.path.join(t.save_dir, "best_model")
            best = t.best_metrics or metrics
            lines[:0] = [f"last epoch: bbox mAP@[.5:.95] {metrics['AP']:.4f}  AP50 {metrics['AP50']:.4f}",
                         f"best_model (epoch {best.get('epoch', '?')}): bbox mAP@[.5:.95] {best['AP']:.4f}  "
                         f"AP50 {best['AP50']:.4f}"]
            lines.append(f"best weights: {best_path}.pdparams")
            lines.append(f"example prediction: {self.draw_example(best_path)}")
        print("\n".join(lines), flush=True)

    def draw_example(self, weights: str) -> str:
        import cv2

        from ..runtime.images import read_image
        from ..utils.visualize import draw_boxes
        from .predictor import Detector

        t = self.trainer
        image = t.eval_dataset.roidbs[0]["im_file"]
        det = Detector(t.cfg, weights=weights, threshold=float(t.cfg.get("infer_draw_threshold", 0.5)))
        res = det.predict(image)
        os.makedirs(t.save_dir, exist_ok=True)
        path = os.path.join(t.save_dir, "example_prediction.jpg")
        bgr = read_image(image)[:, :, ::-1].copy()
        zoom = max(1, int(np.ceil(384 / min(bgr.shape[:2]))))  # small demo images: labels stay readable
        bgr = cv2.resize(bgr, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(path, draw_boxes(bgr, res["boxes"] * zoom, res["class_ids"], res["scores"], det.names))
        return path

"""Evaluation: a model's COCO or VOC mAP on ``EvalDataset``, as PaddleDetection computes it.

``Evaluator(cfg, save_dir)`` builds the dataset, loader and metric once; ``evaluator(model)`` runs
the model in eval mode over every batch (``bbox`` [M,6], ``bbox_num`` [N] from the model) and
returns the metric's numbers (``AP``, ``AP50``, ...), writing ``bbox.json`` (COCO) to
``output_eval`` (default ``save_dir``) and, with ``classwise``, the per-class report.
"""
import time
from typing import Any, Dict

import numpy as np
import paddle

from ..core.errors import ConfigError
from ..data.builder import build_loader_for
from ..metrics.coco_metric import COCOMetric
from ..metrics.plots import classwise_report
from ..metrics.voc_metric import VOCMetric
from ..utils.logger import get_logger
from .hooks import to_tensors

logger = get_logger(__name__)

__all__ = ["Evaluator"]


class Evaluator:
    """The ``EvalDataset`` / ``EvalReader`` of ``cfg`` and its ``metric`` (COCO or VOC)."""

    def __init__(self, cfg: Dict[str, Any], save_dir: str):
        self.cfg = cfg
        self.dataset, self.loader = build_loader_for(cfg, "EvalDataset", "EvalReader", "eval")
        metric = cfg.get("metric", "COCO")
        self.out_dir = cfg.get("output_eval") or save_dir
        classwise = bool(cfg.get("classwise"))
        self.confusion_thresh = float(cfg.get("confusion_score_thresh", 0.25))
        if metric == "VOC":
            self.names = None
            self.metric = VOCMetric(class_num=int(cfg.get("num_classes", 80)),
                                    label_list=self.dataset.get_label_list(), records=self.dataset.roidbs,
                                    map_type=cfg.get("map_type", "11point"), classwise=classwise,
                                    output_eval=self.out_dir, confusion_score_thresh=self.confusion_thresh)
            return
        if metric != "COCO":
            raise ConfigError(f"{cfg.source('metric')}: metric {metric!r} is not one of COCO, VOC")
        catid2clsid = self.dataset.catid2clsid
        self.names = dict(zip(catid2clsid.keys(), self.dataset.get_label_list()))
        self.metric = COCOMetric(self.dataset.get_anno(), {v: k for k, v in catid2clsid.items()},
                                 output_eval=self.out_dir, classwise=classwise, catid2name=self.names,
                                 bias=float(cfg.get("bias", 0.0)))

    @paddle.no_grad()
    def __call__(self, model: paddle.nn.Layer) -> Dict[str, float]:
        self.metric.reset()
        model.eval()
        tic, n, total = time.time(), 0, len(self.loader)
        every = max(int(self.cfg.get("log_iter", 20)), 1)
        for i, batch in enumerate(self.loader):
            im_ids = np.asarray(batch["im_id"])
            out = model(to_tensors(batch))
            self.metric.update({k: out[k].numpy() for k in ("bbox", "bbox_num")}, im_ids)
            n += len(im_ids)
            if (i + 1) % every == 0 and i + 1 < total:
                elapsed = time.time() - tic
                eta = elapsed * (total - i - 1) / (i + 1)
                logger.info(f"Eval [{i + 1}/{total}] {n / elapsed:.1f} images/s eta: "
                            f"{time.strftime('%H:%M:%S', time.gmtime(eta))}")
        logger.info(f"evaluated {n} images in {time.time() - tic:.1f} s")
        metrics = self.metric.accumulate()
        if self.cfg.get("classwise") and "_eval" in metrics:
            logger.info("\n" + classwise_report(metrics["_eval"], self.out_dir, catid2name=self.names,
                                                 score_thresh=self.confusion_thresh))
        metrics.pop("_eval", None)
        return metrics

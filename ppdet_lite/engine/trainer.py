"""The training loop: data, model, optimizer, EMA, logging, checkpoints, evaluation.

The trainer knows nothing about a particular model: it calls ``model(batch)`` and reads the loss
dict in training and ``bbox`` / ``bbox_num`` in evaluation. Only rank 0 logs, evaluates and writes.
"""
import contextlib
import copy
import math
import os
import time
from collections import deque
from typing import Any, Dict, Optional

import numpy as np
import paddle
import paddle.distributed as dist

from ..core.config import section
from ..core.device import set_device
from ..core.errors import ConfigError
from ..data.builder import build_loader_for
from ..metrics.coco_metric import COCOMetric
from ..metrics.plots import classwise_report
from ..metrics.voc_metric import VOCMetric
from ..utils.logger import get_logger
from .checkpoint import (load_checkpoint, load_weights, optimizer_state_from_structured,
                         optimizer_state_to_structured, save_checkpoint)
from .optimizer import ModelEMA, build_lr, build_optimizer

logger = get_logger(__name__)


def to_tensors(batch: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (paddle.to_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in batch.items()}


def check_anchors(cfg: Dict[str, Any]) -> None:
    """The head and the reader's Gt2YoloTarget must use the same anchors (they live in two places)."""
    head = cfg.get("YOLOv3Head", {}).get("anchors")
    for op in (cfg.get("TrainReader") or {}).get("batch_transforms", []) or []:
        if isinstance(op, dict) and "Gt2YoloTarget" in op:
            reader = (op["Gt2YoloTarget"] or {}).get("anchors")
            if head is not None and reader is not None and \
                    np.asarray(head).tolist() != np.asarray(reader).tolist():
                raise ConfigError("YOLOv3Head.anchors and TrainReader Gt2YoloTarget.anchors differ; "
                                  "set both to the same list (tools/anchor_cluster.py prints both overrides)")


class SmoothedValue:
    """Median over the last ``window`` values, for log lines that do not jump every step."""

    def __init__(self, window: int = 20):
        self.values = deque(maxlen=window)

    def update(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else 0.0


class Trainer:
    """``Trainer(cfg, mode)`` with ``mode`` in train / eval; ``train(validate)``, ``evaluate()``.

    ``model``: train or evaluate this model instead of building one from ``cfg`` (a pruned,
    quantized or otherwise prepared model, see ``ppdet_lite.slim.build_slim_model``); it is used
    as it is, so ``pretrain_weights`` are not loaded into it.
    """

    def __init__(self, cfg: Dict[str, Any], mode: str = "train", seed: Optional[int] = None,
                 model: Optional[paddle.nn.Layer] = None):
        from ..modeling import build_model

        self.cfg, self.mode = cfg, mode
        self.device = set_device(cfg)
        self.nranks, self.rank = dist.get_world_size(), dist.get_rank()
        if self.nranks > 1 and mode == "train":
            if cfg.get("fleet"):
                from paddle.distributed import fleet

                fleet.init(is_collective=True)
            elif not dist.is_initialized():
                dist.init_parallel_env()
        self.seed = seed if seed is not None else cfg.get("seed")
        if self.seed is not None:
            paddle.seed(int(self.seed) + self.rank)
            np.random.seed(int(self.seed) + self.rank)
        self.num_classes = int(cfg.get("num_classes", 80))
        self.save_dir = os.path.join(cfg.get("save_dir", "output"), cfg.get("filename", "model"))

        # first: a config mistake fails before any data is read
        self.model = build_model(cfg) if model is None else model
        if mode == "train":
            check_anchors(cfg)
            self.dataset, self.loader = build_loader_for(cfg, "TrainDataset", "TrainReader", "train",
                                                         seed=self.seed)
        self._convert_norm()
        self.metric = None
        self.start_epoch, self.best_ap = 0, -1.0
        if mode == "train":
            self._build_optimization(load_pretrain=model is None)

    # ------------------------------------------------------------------ setup
    def _convert_norm(self) -> None:
        if self.cfg.get("norm_type") != "sync_bn":
            return
        if self.mode == "train" and self.device == "gpu" and self.nranks > 1:
            self.model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            logger.info("norm_type sync_bn: BatchNorm converted to SyncBatchNorm across %d GPUs", self.nranks)
        else:
            logger.info("norm_type sync_bn runs as plain BatchNorm here (needs GPU and more than one process)")

    def rebuild_optimizer(self) -> None:
        """After ``self.model``'s parameters were replaced in place (pruned, quantized): a new
        optimizer, LR schedule and EMA for them; the weights in the model are kept."""
        self._build_optimization(load_pretrain=False)

    def _build_optimization(self, load_pretrain: bool = True) -> None:
        cfg = self.cfg
        steps = len(self.loader)
        if steps == 0:
            raise ConfigError(f"TrainReader yields no batch: {len(self.dataset)} images for batch_size "
                              f"{cfg['TrainReader'].get('batch_size')} with drop_last; lower batch_size")
        self.steps_per_epoch, self.epochs = steps, int(cfg.get("epoch", 1))
        scale = 1.0
        if cfg.get("auto_scale_lr"):
            total = int(cfg["TrainReader"].get("batch_size", 1)) * self.nranks
            ref = int(cfg.get("reference_batch_size", total))
            scale = total / ref
            logger.info(f"auto_scale_lr: total batch {total} vs reference {ref}: base_lr x {scale:.4g}")
        self.lr = build_lr(section(cfg, "LearningRate"), steps, self.epochs, scale)
        self.optimizer = build_optimizer(cfg.get("OptimizerBuilder"), self.lr, self.model)
        self.ema = ModelEMA(self.model, float(cfg.get("ema_decay", 0.9998)),
                            cfg.get("ema_decay_type", "threshold")) if cfg.get("use_ema") else None
        pretrain = cfg.get("pretrain_weights")
        if pretrain and load_pretrain:
            load_weights(self.model, pretrain, partial=True)
        self.train_model = self.model  # a slim wrapper may replace it; train() parallelizes it
        if self.nranks > 1 and cfg.get("fleet"):
            from paddle.distributed import fleet

            self.optimizer = fleet.distributed_optimizer(self.optimizer)
        self.scaler = None
        if cfg.get("amp"):
            if self.device == "gpu":
                self.scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
                logger.info(f"--amp: mixed precision {cfg.get('amp_level', 'O1')}")
            else:
                logger.warning("--amp needs a GPU: training in FP32 on CPU")
        self.vdl = None
        if cfg.get("use_vdl") and self.rank == 0:
            from visualdl import LogWriter

            self.vdl = LogWriter(cfg.get("vdl_log_dir") or "vdl_log_dir/scalar")

    def _parallelize(self) -> None:
        """Wrap ``train_model`` (the model, or a slim wrapper around it) for multi-process
        training, once: every parameter gets exactly one gradient all-reduce."""
        if self.nranks == 1 or isinstance(self.train_model, paddle.DataParallel):
            return
        if self.cfg.get("fleet"):
            from paddle.distributed import fleet

            self.train_model = fleet.distributed_model(self.train_model)
        else:
            self.train_model = paddle.DataParallel(self.train_model)

    def resume(self, path: str) -> None:
        """Restore weights, EMA, optimizer, schedule and epoch from a training checkpoint."""
        state = load_checkpoint(path)
        raw = state["raw_weights"] if state["raw_weights"] is not None else state["weights"]
        self.model.set_state_dict(raw)
        opt = dict(state["optimizer"])
        self.start_epoch = int(opt.pop("last_epoch", 0))
        trainer_state = opt.pop("trainer", {})
        if self.ema is not None and "ema" in trainer_state:
            self.ema.set_state_dict(trainer_state["ema"])
        self.best_ap = float(trainer_state.get("best_ap", -1.0))
        self.optimizer.set_state_dict(optimizer_state_from_structured(opt, self.model))
        self.lr.set_state_dict(trainer_state.get("lr", {"last_epoch": self.start_epoch * self.steps_per_epoch}))
        self.optimizer._learning_rate = self.lr
        logger.info(f"resumed from {path} at epoch {self.start_epoch}")

    # ------------------------------------------------------------------ training
    def train(self, validate: bool = False) -> Dict[str, float]:
        cfg = self.cfg
        log_iter = int(cfg.get("log_iter", 20))
        snapshot = int(cfg.get("snapshot_epoch", 1))
        max_iters = cfg.get("max_iters")  # for quick tests: stop after this many iterations
        total_steps = self.epochs * self.steps_per_epoch
        smoothed: Dict[str, SmoothedValue] = {}
        last_metrics: Dict[str, float] = {}
        step = self.start_epoch * self.steps_per_epoch
        self._parallelize()
        for epoch in range(self.start_epoch, self.epochs):
            self.train_model.train()
            if hasattr(self.loader, "set_epoch"):
                self.loader.set_epoch(epoch)
            tic = time.time()
            for it, batch in enumerate(self.loader):
                batch = to_tensors(batch)
                if self.scaler is not None:
                    with paddle.amp.auto_cast(level=cfg.get("amp_level", "O1")):
                        losses = self.train_model(batch)
                else:
                    losses = self.train_model(batch)
                loss = losses["loss"]
                if not math.isfinite(float(loss)):
                    self._nan_stop(epoch, it, losses)
                if self.scaler is not None:
                    scaled = self.scaler.scale(loss)
                    scaled.backward()
                    self.scaler.minimize(self.optimizer, scaled)
                else:
                    loss.backward()
                    self.optimizer.step()
                self.optimizer.clear_grad()
                self.lr.step()
                if self.ema is not None:
                    self.ema.update()
                step += 1
                for k, v in losses.items():
                    smoothed.setdefault(k, SmoothedValue(log_iter)).update(float(v))
                if self.rank == 0 and (it % log_iter == 0 or it == self.steps_per_epoch - 1):
                    elapsed = time.time() - tic
                    ips = (it + 1) * batch["image"].shape[0] / max(elapsed, 1e-9)
                    eta = (total_steps - step) * elapsed / (it + 1)
                    terms = " ".join(f"{k}: {v.median:.4f}" for k, v in smoothed.items())
                    logger.info(f"Epoch [{epoch}/{self.epochs}] [{it:>3}/{self.steps_per_epoch}] "
                                f"lr: {self.lr.get_lr():.6f} {terms} ips: {ips:.2f} images/s "
                                f"eta: {time.strftime('%H:%M:%S', time.gmtime(eta))}")
                    if self.vdl is not None:
                        for k, v in smoothed.items():
                            self.vdl.add_scalar(f"loss/{k}", v.median, step)
                        self.vdl.add_scalar("lr", self.lr.get_lr(), step)
                if max_iters and step >= int(max_iters):
                    break
            last = epoch == self.epochs - 1 or (max_iters and step >= int(max_iters))
            if (epoch + 1) % snapshot == 0 or last:
                last_metrics = self._snapshot(epoch, validate, final=last) or last_metrics
            if max_iters and step >= int(max_iters):
                break
        return last_metrics

    def _nan_stop(self, epoch: int, it: int, losses: Dict[str, paddle.Tensor]) -> None:
        terms = ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items())
        last = os.path.join(self.save_dir, "model_final")
        ckpts = sorted((f for f in os.listdir(self.save_dir) if f.endswith(".pdparams")),
                       key=lambda f: os.path.getmtime(os.path.join(self.save_dir, f))) \
            if os.path.isdir(self.save_dir) else []
        last = os.path.join(self.save_dir, ckpts[-1][:-9]) if ckpts else "none yet"
        raise FloatingPointError(
            f"loss is not finite at epoch {epoch}, iteration {it} ({terms}). Last good checkpoint: {last}. "
            f"Usual causes: a learning rate too high for the batch size (try -o auto_scale_lr=true or a "
            f"lower LearningRate.base_lr) or missing gradient clipping (OptimizerBuilder.clip_grad_by_norm).")

    def _eval_weights(self) -> Optional[Dict[str, paddle.Tensor]]:
        """Swap EMA weights in; return the raw ones to restore, or None without EMA."""
        if self.ema is None:
            return None
        raw = copy.deepcopy(self.model.state_dict())
        self.model.set_state_dict(self.ema.apply())
        return raw

    @paddle.no_grad()
    def recalibrate_bn(self, num_batches: int) -> None:
        """Re-estimate BatchNorm statistics of the current (e.g. EMA) weights on training batches.

        Opt-in (``bn_recalibrate_batches``, default 0 = PaddleDetection's behaviour). With small
        batches and tiny deep feature maps, running statistics averaged over changing weights can
        disagree badly with the weights being evaluated; an average over a few batches fixes that.
        """
        bns = [m for m in self.model.sublayers() if isinstance(m, paddle.nn.layer.norm._BatchNormBase)]
        saved = [m._momentum for m in bns]
        self.model.train()
        try:
            for i, batch in enumerate(self.loader):
                if i == num_batches:
                    break
                for m in bns:  # running = cumulative mean of the batch statistics seen so far
                    m._momentum = i / (i + 1)
                self.model(to_tensors(batch))
        finally:
            for m, momentum in zip(bns, saved):
                m._momentum = momentum

    def _snapshot(self, epoch: int, validate: bool, final: bool) -> Optional[Dict[str, float]]:
        raw = self._eval_weights()
        if int(self.cfg.get("bn_recalibrate_batches", 0)) > 0:
            self.recalibrate_bn(int(self.cfg["bn_recalibrate_batches"]))
        metrics = None
        try:
            if self.rank == 0:
                weights = self.model.state_dict()
                opt_state = optimizer_state_to_structured(self.optimizer.state_dict(), self.model)
                opt_state["last_epoch"] = epoch + 1
                opt_state["trainer"] = {"lr": self.lr.state_dict(), "best_ap": self.best_ap,
                                        "ema": self.ema.state_dict() if self.ema else None}
                name = "model_final" if final else str(epoch)
                save_checkpoint(self.save_dir, name, weights, raw, opt_state)
                logger.info(f"saved checkpoint {os.path.join(self.save_dir, name)}")
                if validate:
                    metrics = self.evaluate(training=True)
                    ap = metrics.get("AP", 0.0)
                    if self.vdl is not None:
                        for k in ("AP", "AP50"):
                            self.vdl.add_scalar(f"eval/{k}", metrics.get(k, 0.0), epoch + 1)
                    if ap > self.best_ap:
                        self.best_ap, self.best_metrics = ap, dict(metrics, epoch=epoch)
                        save_checkpoint(self.save_dir, "best_model", weights)
                        logger.info(f"best_model updated: AP {ap:.4f} (epoch {epoch})")
                    logger.info(f"best AP so far: {self.best_ap:.4f}")
        finally:
            if raw is not None:
                self.model.set_state_dict(raw)
        return metrics

    def summarize(self, metrics: Dict[str, float], validate: bool) -> None:
        """Final lines of a run: mAP, where the weights are, and one annotated validation image."""
        if self.rank != 0:
            return
        lines = [f"weights: {os.path.join(self.save_dir, 'model_final.pdparams')}"]
        if validate and metrics:
            best_path = os.path.join(self.save_dir, "best_model")
            best = getattr(self, "best_metrics", metrics)
            lines[:0] = [f"last epoch: bbox mAP@[.5:.95] {metrics['AP']:.4f}  AP50 {metrics['AP50']:.4f}",
                         f"best_model (epoch {best.get('epoch', '?')}): bbox mAP@[.5:.95] {best['AP']:.4f}  "
                         f"AP50 {best['AP50']:.4f}"]
            lines.append(f"best weights: {best_path}.pdparams")
            example = self._draw_example(best_path)
            if example:
                lines.append(f"example prediction: {example}")
        print("\n".join(lines), flush=True)

    def _draw_example(self, weights: str) -> Optional[str]:
        import cv2

        from ..utils.visualize import draw_boxes
        from .predictor import Detector

        self._build_eval()
        image = self.eval_dataset.roidbs[0]["im_file"]
        threshold = float(self.cfg.get("infer_draw_threshold", 0.5))
        det = Detector(self.cfg, weights=weights, threshold=threshold)
        res = det.predict(image)
        os.makedirs(self.save_dir, exist_ok=True)
        path = os.path.join(self.save_dir, "example_prediction.jpg")
        bgr = cv2.imread(image)
        zoom = max(1, int(np.ceil(384 / min(bgr.shape[:2]))))  # small demo images: labels stay readable
        bgr = cv2.resize(bgr, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(path, draw_boxes(bgr, res["boxes"] * zoom, res["class_ids"], res["scores"], det.names))
        return path

    # ------------------------------------------------------------------ evaluation
    def _build_eval(self) -> None:
        if self.metric is not None:
            return
        self.eval_dataset, self.eval_loader = build_loader_for(self.cfg, "EvalDataset", "EvalReader", "eval")
        metric = self.cfg.get("metric", "COCO")
        self.eval_out_dir = self.cfg.get("output_eval") or self.save_dir
        classwise = bool(self.cfg.get("classwise"))
        if metric == "VOC":
            self.eval_names = None
            self.metric = VOCMetric(class_num=self.num_classes, label_list=self.eval_dataset.get_label_list(),
                                    records=self.eval_dataset.roidbs, map_type=self.cfg.get("map_type", "11point"),
                                    classwise=classwise, output_eval=self.eval_out_dir,
                                    confusion_score_thresh=float(self.cfg.get("confusion_score_thresh", 0.25)))
            return
        if metric != "COCO":
            raise ConfigError(f"{self.cfg.source('metric')}: metric {metric!r} is not one of COCO, VOC")
        catid2clsid = self.eval_dataset.catid2clsid
        self.eval_names = dict(zip(catid2clsid.keys(), self.eval_dataset.get_label_list()))
        self.metric = COCOMetric(self.eval_dataset.get_anno(), {v: k for k, v in catid2clsid.items()},
                                 output_eval=self.eval_out_dir, classwise=classwise,
                                 catid2name=self.eval_names, bias=float(self.cfg.get("bias", 0.0)))

    @contextlib.contextmanager
    def _capped_post_process(self):
        """During training-time eval, cap pre-NMS boxes and raise the score floor.

        An unconverged model scores thousands of boxes per image and NMS then takes minutes
        (PaddleDetection's "eval hangs at iter 0"). ``eval_score_threshold`` (default 0.01) and
        ``eval_nms_top_k`` (default 1000) bound that; final ``tools/eval.py`` runs are uncapped.
        """
        post = getattr(self.model, "post_process", None)
        nms, decode = getattr(post, "nms", None), getattr(post, "decode", None)
        saved = {}
        floor = float(self.cfg.get("eval_score_threshold", 0.01))
        top_k = int(self.cfg.get("eval_nms_top_k", 1000))
        for obj, attr, value in ((decode, "conf_thresh", floor), (nms, "score_threshold", floor)):
            if obj is not None and hasattr(obj, attr) and getattr(obj, attr) < value:
                saved[(obj, attr)] = getattr(obj, attr)
                setattr(obj, attr, value)
        if nms is not None and hasattr(nms, "nms_top_k") and not 0 < nms.nms_top_k <= top_k:
            saved[(nms, "nms_top_k")] = nms.nms_top_k
            nms.nms_top_k = top_k
        if saved and not getattr(self, "_cap_logged", False):
            logger.warning(f"training-time eval uses score threshold >= {floor} and at most {top_k} boxes "
                           f"before NMS, so an unconverged model cannot stall it; tools/eval.py is uncapped")
            self._cap_logged = True
        try:
            yield
        finally:
            for (obj, attr), value in saved.items():
                setattr(obj, attr, value)

    @paddle.no_grad()
    def evaluate(self, training: bool = False) -> Dict[str, float]:
        """COCO mAP of the current weights on ``EvalDataset``; writes ``bbox.json``."""
        if training:
            with self._capped_post_process():
                return self._evaluate(training)
        return self._evaluate(training)

    def _evaluate(self, training: bool) -> Dict[str, float]:
        self._build_eval()
        self.metric.reset()
        self.model.eval()
        tic, n = time.time(), 0
        for batch in self.eval_loader:
            im_ids = np.asarray(batch["im_id"])
            out = self.model(to_tensors(batch))
            self.metric.update({k: out[k].numpy() for k in ("bbox", "bbox_num")}, im_ids)
            n += len(im_ids)
        logger.info(f"evaluated {n} images in {time.time() - tic:.1f} s")
        metrics = self.metric.accumulate()
        if self.cfg.get("classwise") and "_eval" in metrics:
            logger.info("\n" + classwise_report(metrics["_eval"], self.eval_out_dir, catid2name=self.eval_names,
                                                 score_thresh=float(self.cfg.get("confusion_score_thresh", 0.25))))
        metrics.pop("_eval", None)
        if training:
            self.model.train()
        return metrics

"""Training hooks: every job around the training loop (Detectron2's ``HookBase`` shape).

A hook overrides any of ``before_train``, ``before_epoch``, ``before_step``, ``after_step``,
``after_epoch``, ``after_train``; the trainer calls each event on its hooks in registration order,
``after_train`` also when training stopped on an error (``trainer.finished`` says which). A hook
reads the trainer it is attached to (``self.trainer``): ``cfg``, ``model`` (what is saved and
evaluated), ``train_model`` (what the step runs), ``optimizer``, ``lr``, ``loader``, ``rank``,
``save_dir``, ``validate``, ``epoch``, ``epochs``, ``iter`` (in the epoch), ``step`` (iterations
done), ``steps_per_epoch``, ``batch`` and ``losses`` (of the step just run), ``snapshot_due`` and
``final`` (in ``after_epoch``), ``eval_metrics`` (this epoch's evaluation, else None), ``metrics``.
A hook with state to resume returns it from ``state_dict()`` (merged into the checkpoint's trainer
state) and takes it back in ``load_state_dict(state)``.

Default order (``Trainer.default_hooks``): NaNGuardHook, EMAHook, BNRecalibrationHook,
CheckpointHook, EvalHook, BestCheckpointHook, LoggerHook, ModelInfoHook (``report_hooks.py``, as is
SummaryHook); then whatever ``register_hooks`` added. The EMA hook swaps the averaged weights in at a
snapshot, so the hooks after it recalibrate, save and evaluate those.
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

from ..utils.logger import get_logger
from .checkpoint import optimizer_state_to_structured, save_checkpoint

logger = get_logger(__name__)

__all__ = ["to_tensors", "HookBase", "NaNGuardHook", "EMAHook", "BNRecalibrationHook", "CheckpointHook",
           "EvalHook", "BestCheckpointHook", "LoggerHook", "recalibrate_bn", "eval_bounds"]


def to_tensors(batch: Dict[str, Any]) -> Dict[str, Any]:
    """A loader batch with its numpy arrays as paddle tensors."""
    return {k: (paddle.to_tensor(v) if isinstance(v, np.ndarray) else v) for k, v in batch.items()}


class HookBase:
    """Override the events you need; ``self.trainer`` is set when the hook is registered."""

    trainer = None

    def before_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class NaNGuardHook(HookBase):
    """Stop at the first non-finite loss with the step's terms and the last checkpoint written
    (``nan_check``, default true)."""

    def after_step(self) -> None:
        t = self.trainer
        if math.isfinite(float(t.losses["loss"])):
            return
        terms = ", ".join(f"{k}={float(v):.4g}" for k, v in t.losses.items())
        ckpts = sorted((f for f in os.listdir(t.save_dir) if f.endswith(".pdparams")),
                       key=lambda f: os.path.getmtime(os.path.join(t.save_dir, f))) \
            if os.path.isdir(t.save_dir) else []
        last = os.path.join(t.save_dir, ckpts[-1][:-9]) if ckpts else "none yet"
        raise FloatingPointError(
            f"loss is not finite at epoch {t.epoch}, iteration {t.iter} ({terms}). Last good checkpoint: "
            f"{last}. Usual causes: a learning rate too high for the batch size (try -o auto_scale_lr=true "
            f"or a lower LearningRate.base_lr) or missing gradient clipping (OptimizerBuilder.clip_grad_by_norm).")


class EMAHook(HookBase):
    """Update ``ema`` (a ``ModelEMA`` of ``trainer.model``) after every step; at a snapshot, swap
    its weights into the model (``trainer.raw_weights`` keeps the training weights) until the next
    epoch starts or training ends. ``cycle_epoch`` > 0: restart the average every that many epochs
    (PaddleDetection's ``cycle_epoch``)."""

    def __init__(self, ema, cycle_epoch: int = -1):
        self.ema, self.cycle_epoch = ema, int(cycle_epoch)

    def before_epoch(self) -> None:
        self._restore()
        epoch = self.trainer.epoch
        if self.cycle_epoch > 0 and epoch > 0 and epoch % self.cycle_epoch == 0:
            self.ema.reset()

    def after_step(self) -> None:
        self.ema.update()

    def after_epoch(self) -> None:
        t = self.trainer
        if t.snapshot_due:
            t.raw_weights = copy.deepcopy(t.model.state_dict())
            t.model.set_state_dict(self.ema.apply())

    def after_train(self) -> None:
        self._restore()

    def _restore(self) -> None:
        t = self.trainer
        if getattr(t, "raw_weights", None) is not None:
            t.model.set_state_dict(t.raw_weights)
            t.raw_weights = None

    def state_dict(self) -> Dict[str, Any]:
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state.get("ema") is not None:
            self.ema.set_state_dict(state["ema"])


@paddle.no_grad()
def recalibrate_bn(model: paddle.nn.Layer, loader, num_batches: int) -> None:
    """Re-estimate BatchNorm running statistics of ``model``'s current weights: the cumulative
    mean of the batch statistics of ``num_batches`` batches of ``loader`` (training mode)."""
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.layer.norm._BatchNormBase)]
    saved = [m._momentum for m in bns]
    model.train()
    try:
        for i, batch in enumerate(loader):
            if i == num_batches:
                break
            for m in bns:
                m._momentum = i / (i + 1)
            model(to_tensors(batch))
    finally:
        for m, momentum in zip(bns, saved):
            m._momentum = momentum


class BNRecalibrationHook(HookBase):
    """PreciseBN at each snapshot (``bn_recalibrate_batches`` > 0; 0, the default, is
    PaddleDetection's behaviour). With small batches and tiny deep feature maps, statistics
    averaged over changing weights can disagree badly with the (EMA) weights being evaluated."""

    def __init__(self, num_batches: int):
        self.num_batches = int(num_batches)

    def after_epoch(self) -> None:
        if self.trainer.snapshot_due:
            recalibrate_bn(self.trainer.model, self.trainer.loader, self.num_batches)


class FreezeBNHook(HookBase):
    """From epoch ``start`` on, BatchNorm layers train on their running statistics (eval mode: no
    batch statistics, no updates), the normalization inference uses. Batch statistics hide an
    image whose features run away (its own outlier values inflate the batch variance that divides
    them); with the running statistics of inference nothing does, and the error compounds layer
    after layer (measured on the demo: a backbone output of 369 in eval mode, 20 in train mode,
    4 for other images, and ~70 background boxes scored >= 0.3 in that image). Training the last
    epochs this way puts that error in the loss."""

    def __init__(self, start: int):
        self.start = int(start)

    def before_epoch(self) -> None:
        if self.trainer.epoch >= self.start:
            for m in self.trainer.model.sublayers():
                if isinstance(m, paddle.nn.layer.norm._BatchNormBase):
                    m.eval()


class CheckpointHook(HookBase):
    """Rank 0 writes ``<epoch>`` / ``model_final`` at each snapshot (PaddleDetection's layout,
    see ``checkpoint.py``); the trainer state is the LR schedule plus every hook's state."""

    def after_epoch(self) -> None:
        t = self.trainer
        if not t.snapshot_due or t.rank != 0:
            return
        opt_state = optimizer_state_to_structured(t.optimizer.state_dict(), t.model)
        opt_state["last_epoch"] = t.epoch + 1
        opt_state["trainer"] = t.state_dict()
        name = "model_final" if t.final else str(t.epoch)
        save_checkpoint(t.save_dir, name, t.model.state_dict(), getattr(t, "raw_weights", None), opt_state)
        logger.info(f"saved checkpoint {os.path.join(t.save_dir, name)}")


@contextlib.contextmanager
def eval_bounds(model: paddle.nn.Layer, score_floor: float, top_k: int):
    """Bound a model's post-processing for training-time evaluation: scores below ``score_floor``
    dropped, at most ``top_k`` boxes per image before NMS, restored after. The model does it
    through its ``bounded_eval(score_threshold, nms_top_k)`` context manager; a model without one
    is evaluated unbounded."""
    own = getattr(model, "bounded_eval", None)
    with (own(score_floor, top_k) if own is not None else contextlib.nullcontext()):
        yield


class EvalHook(HookBase):
    """With ``train(validate=True)``: rank 0 evaluates at each snapshot into ``trainer.eval_metrics``.

    An unconverged model scores thousands of boxes per image and NMS then takes minutes
    (PaddleDetection's "eval hangs at iter 0"): ``eval_score_threshold`` (default 0.01) and
    ``eval_nms_top_k`` (default 1000) bound it (``eval_bounds``); tools/eval.py is unbounded.
    """

    def __init__(self, score_floor: float = 0.01, top_k: int = 1000):
        self.score_floor, self.top_k = float(score_floor), int(top_k)
        self._logged = False

    def after_epoch(self) -> None:
        t = self.trainer
        t.eval_metrics = None
        if t.snapshot_due and t.validate and t.rank == 0:
            t.eval_metrics = self.evaluate()
            t.metrics = t.eval_metrics

    def evaluate(self) -> Dict[str, float]:
        if not self._logged:
            logger.warning(f"training-time eval keeps scores >= {self.score_floor} and at most {self.top_k} "
                           f"boxes before NMS, so an unconverged model cannot stall it; tools/eval.py does not")
            self._logged = True
        with eval_bounds(self.trainer.model, self.score_floor, self.top_k):
            return self.trainer.evaluate(training=True)


class BestCheckpointHook(HookBase):
    """Keep ``best_model`` (the evaluated weights of the best ``AP`` so far); resumable."""

    def __init__(self):
        self.best_ap, self.best_metrics = -1.0, None

    def after_epoch(self) -> None:
        t = self.trainer
        if t.eval_metrics is None:
            return
        ap = t.eval_metrics.get("AP", 0.0)
        if ap > self.best_ap:
            self.best_ap, self.best_metrics = ap, dict(t.eval_metrics, epoch=t.epoch)
            save_checkpoint(t.save_dir, "best_model", t.model.state_dict())
            logger.info(f"best_model updated: AP {ap:.4f} (epoch {t.epoch})")
        logger.info(f"best AP so far: {self.best_ap:.4f}")

    def state_dict(self) -> Dict[str, Any]:
        return {"best_ap": self.best_ap}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best_ap = float(state.get("best_ap", -1.0))


class SmoothedValue:
    """Median over the last ``window`` values, for log lines that do not jump every step."""

    def __init__(self, window: int = 20):
        self.values = deque(maxlen=window)

    def update(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else 0.0


class LoggerHook(HookBase):
    """Rank 0: one line every ``log_iter`` steps and at each epoch's last (lr, smoothed losses,
    images/s, ETA: the remaining steps at this epoch's pace plus, per remaining epoch, the mean
    time spent between epochs so far, evaluation and checkpoints included); with ``vdl_dir`` (``use_vdl``) the same losses and lr as VisualDL scalars
    ``loss/<name>``, ``lr`` (x: step) and ``eval/AP``, ``eval/AP50`` (x: epoch + 1)."""

    def __init__(self, log_iter: int = 20, vdl_dir: Optional[str] = None):
        self.log_iter, self.vdl_dir, self.vdl = int(log_iter), vdl_dir, None
        self.smoothed: Dict[str, SmoothedValue] = {}
        self.between_s, self.between_n, self._steps_done = 0.0, 0, None

    def before_train(self) -> None:
        if self.vdl_dir and self.trainer.rank == 0 and self.vdl is None:
            from visualdl import LogWriter

            self.vdl = LogWriter(self.vdl_dir)

    def before_epoch(self) -> None:
        self.tic = time.time()
        if self._steps_done is not None:  # eval, checkpoints, ... of the previous epoch
            self.between_s += self.tic - self._steps_done
            self.between_n += 1

    def after_step(self) -> None:
        t = self.trainer
        for k, v in t.losses.items():
            self.smoothed.setdefault(k, SmoothedValue(self.log_iter)).update(float(v))
        if t.rank != 0 or not (t.iter % self.log_iter == 0 or t.iter == t.steps_per_epoch - 1):
            return
        now = time.time()
        elapsed = now - self.tic
        if t.iter == t.steps_per_epoch - 1:
            self._steps_done = now
        ips = (t.iter + 1) * t.batch["image"].shape[0] / max(elapsed, 1e-9)
        eta = (t.epochs * t.steps_per_epoch - t.step) * elapsed / (t.iter + 1)
        if self.between_n:
            eta += (t.epochs - t.epoch) * self.between_s / self.between_n
        terms = " ".join(f"{k}: {v.median:.4f}" for k, v in self.smoothed.items())
        logger.info(f"Epoch [{t.epoch}/{t.epochs}] [{t.iter:>3}/{t.steps_per_epoch}] lr: {t.lr.get_lr():.6f} "
                    f"{terms} ips: {ips:.2f} images/s eta: {time.strftime('%H:%M:%S', time.gmtime(eta))}")
        if self.vdl is not None:
            for k, v in self.smoothed.items():
                self.vdl.add_scalar(f"loss/{k}", v.median, t.step)
            self.vdl.add_scalar("lr", t.lr.get_lr(), t.step)

    def after_epoch(self) -> None:
        metrics = self.trainer.eval_metrics
        if self.vdl is not None and metrics is not None:
            for k in ("AP", "AP50"):
                self.vdl.add_scalar(f"eval/{k}", metrics.get(k, 0.0), self.trainer.epoch + 1)

    def after_train(self) -> None:
        if self.vdl is not None:
            self.vdl.close()
            self.vdl = None

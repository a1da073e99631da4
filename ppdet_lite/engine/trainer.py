"""The training loop and evaluation; every job around the loop is a hook (``hooks.py``).

The trainer knows nothing about a particular model: it calls ``model(batch)`` and reads the loss
dict in training and ``bbox`` / ``bbox_num`` in evaluation. A slim method plugs in with
``train_wrapper`` (a layer around the model for the training step, e.g. distillation) or
``register_hooks``. Only rank 0 logs, evaluates and writes.
"""
import contextlib
import os
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import paddle
import paddle.distributed as dist

from ..core.config import section
from ..core.device import set_device
from ..core.errors import ConfigError, writable_dir
from ..core.unimplemented import NotImplementedSetting, check_not_implemented
from ..data.builder import build_loader_for
from ..utils.logger import get_logger
from . import hooks as H
from .checkpoint import load_checkpoint, load_weights, match_state, optimizer_state_from_structured
from .evaluator import Evaluator
from .hooks import to_tensors  # noqa: F401  (the trainer's batch conversion, used by callers)
from .optimizer import ModelEMA, build_lr, build_optimizer
from .report_hooks import ModelInfoHook

logger = get_logger(__name__)

# PaddleDetection training settings the trainer does not implement: they load only at their no-op value
_NOT_IMPLEMENTED = {
    "amp_level": NotImplementedSetting(
        ("O1", None), "the AMP level; O2 casts the model to float16 with paddle.amp.decorate",
        "--amp trains with O1 (auto_cast of white-listed ops) on a GPU"),
    "master_grad": NotImplementedSetting(
        (False, None), "keep float32 gradients for AMP O2", "AMP O2 is not implemented: use --amp (O1)"),
}


def check_trainer_keys(cfg: Dict[str, Any]) -> None:
    """ConfigError for a training setting ppdet_lite does not implement (value ranges are checked
    when the config loads, ``core/values.py``)."""
    check_not_implemented(cfg, _NOT_IMPLEMENTED, cfg.source if hasattr(cfg, "source") else "<config>")


class Trainer:
    """``Trainer(cfg, mode)`` with ``mode`` in train / eval; ``train(validate)``, ``evaluate()``.

    ``model``: train or evaluate this model instead of building one from ``cfg`` (a pruned,
    quantized or otherwise prepared model, see ``ppdet_lite.slim.build_slim_model``); it is used
    as it is, so ``pretrain_weights`` are not loaded into it. ``train_wrapper(model)`` → the layer
    the training step runs (the optimizer trains its ``parameters()``: the model's and any of the
    wrapper's own, such as a distillation adapter); checkpoints, EMA and evaluation see ``model``
    alone. ``hooks``: more hooks after the default ones (``register_hooks``).
    """

    def __init__(self, cfg: Dict[str, Any], mode: str = "train", seed: Optional[int] = None,
                 model: Optional[paddle.nn.Layer] = None,
                 train_wrapper: Optional[Callable[[paddle.nn.Layer], paddle.nn.Layer]] = None,
                 hooks: Optional[List[H.HookBase]] = None):
        from ..modeling import build_model

        self.cfg, self.mode = cfg, mode
        check_trainer_keys(cfg)
        self.device = set_device(cfg)
        self.nranks, self.rank = dist.get_world_size(), dist.get_rank()
        if self.nranks > 1 and mode == "train":
            self._init_distributed()
        self.seed = seed if seed is not None else cfg.get("seed")
        if self.seed is not None:
            paddle.seed(int(self.seed) + self.rank)
            np.random.seed(int(self.seed) + self.rank)
        self.num_classes = int(cfg.get("num_classes", 80))
        self.save_dir = os.path.join(cfg.get("save_dir", "output"), cfg.get("filename", "model"))

        if mode == "train" and self.rank == 0:  # before any work: a save_dir that cannot take a checkpoint
            writable_dir(self.save_dir, "save_dir", "pass -o save_dir=<a directory you can write to>")
        # first: a config mistake fails before any data is read
        self.model = build_model(cfg) if model is None else model
        if mode == "train":
            self.dataset, self.loader = build_loader_for(cfg, "TrainDataset", "TrainReader", "train",
                                                         seed=self.seed)
        self._convert_norm()
        self._evaluator, self.start_epoch = None, 0
        self._wrapper, self._extra_hooks, self.hooks = train_wrapper, [], []
        if mode == "train":
            self._build_optimization(load_pretrain=model is None)
            self.register_hooks(hooks or [])

    # ------------------------------------------------------------------ setup
    def _init_distributed(self) -> None:
        if self.cfg.get("fleet"):
            from paddle.distributed import fleet

            strategy = fleet.DistributedStrategy()
            strategy.find_unused_parameters = bool(self.cfg.get("find_unused_parameters", False))
            fleet.init(is_collective=True, strategy=strategy)
        elif not dist.is_initialized():
            dist.init_parallel_env()

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
        optimizer, LR schedule, EMA and default hooks for them; the weights in the model are kept."""
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
        self.set_train_wrapper(self._wrapper)
        # the training step's parameters: the model's, and a wrapper's own (a distillation adapter)
        self.optimizer = build_optimizer(cfg.get("OptimizerBuilder"), self.lr, self.train_model)
        self.ema = ModelEMA(self.model, float(cfg.get("ema_decay", 0.9998)),
                            cfg.get("ema_decay_type", "threshold")) if cfg.get("use_ema") else None
        pretrain = cfg.get("pretrain_weights")
        if pretrain and load_pretrain:
            load_weights(self.model, pretrain, partial=True)
        if self.nranks > 1 and cfg.get("fleet"):
            from paddle.distributed import fleet

            self.optimizer = fleet.distributed_optimizer(self.optimizer)
        self.scaler = None
        if cfg.get("amp"):
            if self.device == "gpu":
                self.scaler = paddle.amp.GradScaler(init_loss_scaling=1024)
                logger.info("--amp: mixed precision O1")
            else:
                logger.warning("--amp needs a GPU: training in FP32 on CPU")
        self.hooks = self.default_hooks() + self._extra_hooks
        for hook in self.hooks:
            hook.trainer = self

    def default_hooks(self) -> List[H.HookBase]:
        """NaN guard, EMA, BN recalibration, BN freezing, checkpoints, evaluation, best model, logging, model info."""
        cfg = self.cfg
        out = [H.NaNGuardHook()] if cfg.get("nan_check", True) else []
        if self.ema is not None:
            out.append(H.EMAHook(self.ema, int(cfg.get("cycle_epoch", -1))))
        if int(cfg.get("bn_recalibrate_batches", 0)) > 0:
            out.append(H.BNRecalibrationHook(int(cfg["bn_recalibrate_batches"])))
        if cfg.get("freeze_bn_epoch") is not None:
            out.append(H.FreezeBNHook(int(cfg["freeze_bn_epoch"])))
        out += [H.CheckpointHook(),
                H.EvalHook(cfg.get("eval_score_threshold", 0.01), cfg.get("eval_nms_top_k", 1000)),
                H.BestCheckpointHook(),
                H.LoggerHook(int(cfg.get("log_iter", 20)),
                             (cfg.get("vdl_log_dir") or "vdl_log_dir/scalar") if cfg.get("use_vdl") else None)]
        if cfg.get("print_params") or cfg.get("print_flops"):
            out.append(ModelInfoHook(cfg.get("print_params"), cfg.get("print_flops")))
        return out

    def register_hooks(self, hooks: List[H.HookBase]) -> None:
        """Add hooks after those registered before; they stay through ``rebuild_optimizer``."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)
            self._extra_hooks.append(hook)

    def set_train_wrapper(self, wrapper: Optional[Callable[[paddle.nn.Layer], paddle.nn.Layer]]) -> None:
        """``train_model = wrapper(model)`` (the constructor's ``train_wrapper``), before ``train``."""
        if isinstance(getattr(self, "train_model", None), paddle.DataParallel):
            raise RuntimeError("set_train_wrapper after train() started: pass train_wrapper to Trainer")
        self._wrapper = wrapper
        self.train_model = wrapper(self.model) if wrapper else self.model

    def _parallelize(self) -> None:
        """Wrap ``train_model`` (the model, or a slim wrapper around it) for multi-process
        training, once: every parameter gets exactly one gradient all-reduce."""
        if self.nranks == 1 or isinstance(self.train_model, paddle.DataParallel):
            return
        if self.cfg.get("fleet"):
            from paddle.distributed import fleet

            self.train_model = fleet.distributed_model(self.train_model)
        else:
            self.train_model = paddle.DataParallel(
                self.train_model, find_unused_parameters=bool(self.cfg.get("find_unused_parameters", False)))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        """The trainer part of a checkpoint: the LR schedule and every hook's state (one key each)."""
        state = {"lr": self.lr.state_dict()}
        for hook in self.hooks:
            part = hook.state_dict()
            if set(part) & set(state):
                raise ValueError(f"{type(hook).__name__}.state_dict() keys {sorted(set(part) & set(state))} "
                                 f"are taken by another hook or the LR schedule; use other names")
            state.update(part)
        return state

    def resume(self, path: str) -> None:
        """Restore weights, optimizer, schedule, epoch and the hooks' state (EMA, best AP)."""
        state = load_checkpoint(path)
        raw = state["raw_weights"] if state["raw_weights"] is not None else state["weights"]
        matched, report = match_state(self.model.state_dict(), raw, partial=False)
        wrong = report["missing"] + report["unexpected"] + report["mismatched"] + report["head_skipped"]
        if wrong:  # resuming continues one run: every tensor must be this model's
            raise ConfigError(f"cannot resume from {path}: it is not a checkpoint of this model "
                              f"({len(wrong)} tensors differ, e.g. {wrong[:3]}); check -c, or start a new "
                              f"run from its weights with -o pretrain_weights={path}")
        self.model.set_state_dict(matched)
        opt = dict(state["optimizer"])
        self.start_epoch = int(opt.pop("last_epoch", 0))
        if self.start_epoch >= self.epochs:
            raise ConfigError(f"cannot resume from {path}: it finished epoch {self.start_epoch} and the config "
                              f"trains {self.epochs} epochs, so there is nothing left to train; raise -o epoch=N "
                              f"(N > {self.start_epoch}) to train on")
        trainer_state = opt.pop("trainer", {})
        for hook in self.hooks:
            hook.load_state_dict(trainer_state)
        self.optimizer.set_state_dict(optimizer_state_from_structured(opt, self.model))
        self.lr.set_state_dict(trainer_state.get("lr", {"last_epoch": self.start_epoch * self.steps_per_epoch}))
        self.optimizer._learning_rate = self.lr
        logger.info(f"resumed from {path} at epoch {self.start_epoch}")

    def _hook(self, kind):
        return next((h for h in self.hooks if isinstance(h, kind)), None)

    @property
    def best_ap(self) -> float:
        best = self._hook(H.BestCheckpointHook)
        return best.best_ap if best else -1.0

    @property
    def best_metrics(self) -> Optional[Dict[str, float]]:
        best = self._hook(H.BestCheckpointHook)
        return best.best_metrics if best else None

    # ------------------------------------------------------------------ training
    def _call(self, event: str) -> None:
        for hook in list(self.hooks):
            getattr(hook, event)()

    def train(self, validate: bool = False) -> Dict[str, float]:
        """Run the epochs; returns the last evaluation's metrics (empty without ``validate``)."""
        max_iters = int(self.cfg.get("max_iters") or 0)  # quick tests: stop after this many iterations
        snapshot = int(self.cfg.get("snapshot_epoch", 1))
        self.validate, self.metrics, self.eval_metrics, self.finished = validate, {}, None, False
        self.step = self.start_epoch * self.steps_per_epoch
        self._parallelize()
        try:
            self._call("before_train")
            for self.epoch in range(self.start_epoch, self.epochs):
                self.train_model.train()
                if hasattr(self.loader, "set_epoch"):
                    self.loader.set_epoch(self.epoch)
                self._call("before_epoch")
                for self.iter, batch in enumerate(self.loader):
                    self.batch = to_tensors(batch)
                    self._call("before_step")
                    self.losses = self.run_step(self.batch)
                    self.step += 1
                    self._call("after_step")
                    if max_iters and self.step >= max_iters:
                        break
                stop = bool(max_iters and self.step >= max_iters)
                self.final = self.epoch == self.epochs - 1 or stop
                self.snapshot_due = (self.epoch + 1) % snapshot == 0 or self.final
                self._call("after_epoch")
                if stop:
                    break
            self.finished = True
        finally:
            self._call("after_train")
        return self.metrics

    def run_step(self, batch: Dict[str, Any]) -> Dict[str, paddle.Tensor]:
        """Forward, backward, optimizer and LR step on one batch; returns the loss dict."""
        amp = paddle.amp.auto_cast(level="O1") if self.scaler is not None else contextlib.nullcontext()
        with amp:
            losses = self.train_model(batch)
        loss = losses["loss"]
        if self.scaler is not None:
            scaled = self.scaler.scale(loss)
            scaled.backward()
            self.scaler.minimize(self.optimizer, scaled)
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.clear_grad()
        self.lr.step()
        return losses

    # ------------------------------------------------------------------ evaluation
    @property
    def evaluator(self) -> Evaluator:
        """The ``EvalDataset`` evaluation (built at first use)."""
        if self._evaluator is None:
            self._evaluator = Evaluator(self.cfg, self.save_dir)
        return self._evaluator

    @property
    def eval_dataset(self):
        return self.evaluator.dataset

    def evaluate(self, training: bool = False) -> Dict[str, float]:
        """COCO (or VOC) mAP of the current weights on ``EvalDataset``; writes ``bbox.json``.
        ``training``: called during training (the model goes back to train mode after)."""
        evaluator = self.evaluator
        if not training and (self.cfg.get("print_params") or self.cfg.get("print_flops")):
            ModelInfoHook(self.cfg.get("print_params"), self.cfg.get("print_flops")).log(
                self.model, next(iter(evaluator.loader))["image"].shape[1:])
        metrics = evaluator(self.model)
        if training:
            self.model.train()
        return metrics

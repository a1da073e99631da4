"""Learning-rate schedules, the optimizer and the EMA of weights, as PaddleDetection configures them.

``LearningRate: {base_lr, schedulers: [PiecewiseDecay | CosineDecay, LinearWarmup]}`` and
``OptimizerBuilder: {optimizer: {type: Momentum, momentum}, regularizer: {type: L2, factor},
clip_grad_by_norm}``. Milestones are in epochs and become iterations here; the rate changes every
iteration. Parameters whose ``ParamAttr`` carries its own regularizer (BN with ``norm_decay 0``, the
head's conv biases) keep it: Paddle lets that override the optimizer's L2.
"""
import math
from typing import Any, Dict, List, Optional

import paddle

from ..core.errors import ConfigError
from ..core.registry import create, register


@register
class PiecewiseDecay:
    """``base_lr * gamma**k`` after the k-th milestone (epochs), or explicit ``values``."""

    def __init__(self, gamma: float = 0.1, milestones: List[int] = (8, 11), values: Optional[List[float]] = None,
                 use_warmup: bool = True):
        self.gamma, self.milestones, self.values, self.use_warmup = gamma, list(milestones), values, use_warmup

    def __call__(self, base_lr: float, step: int, steps_per_epoch: int, max_steps: int) -> float:
        passed = sum(step >= m * steps_per_epoch for m in self.milestones)
        if self.values is not None:
            return self.values[passed]
        return base_lr * self.gamma ** passed


@register
class CosineDecay:
    """Cosine from ``base_lr`` to ``min_lr_ratio * base_lr`` over ``max_epochs`` (default: all)."""

    def __init__(self, max_epochs: Optional[int] = None, use_warmup: bool = True, min_lr_ratio: float = 0.0):
        self.max_epochs, self.use_warmup, self.min_lr_ratio = max_epochs, use_warmup, min_lr_ratio

    def __call__(self, base_lr: float, step: int, steps_per_epoch: int, max_steps: int) -> float:
        total = self.max_epochs * steps_per_epoch if self.max_epochs else max_steps
        low = base_lr * self.min_lr_ratio
        t = min(step, total) / max(total, 1)
        return low + (base_lr - low) * 0.5 * (1 + math.cos(math.pi * t))


@register
class LinearWarmup:
    """Scale the schedule's rate from ``start_factor`` to 1 over ``steps`` iterations (or ``epochs``)."""

    def __init__(self, steps: int = 500, start_factor: float = 1.0 / 3, epochs: Optional[int] = None):
        self.steps, self.start_factor, self.epochs = steps, start_factor, epochs

    def length(self, steps_per_epoch: int) -> int:
        return self.epochs * steps_per_epoch if self.epochs is not None else self.steps

    def factor(self, step: int, steps_per_epoch: int) -> float:
        length = self.length(steps_per_epoch)
        if step >= length or length <= 0:
            return 1.0
        alpha = step / length
        return self.start_factor * (1 - alpha) + alpha


class IterLR(paddle.optimizer.lr.LRScheduler):
    """A per-iteration schedule: a decay rule times an optional warm-up factor."""

    def __init__(self, base_lr: float, decay, warmup: Optional[LinearWarmup], steps_per_epoch: int,
                 max_steps: int):
        self.decay, self.warmup = decay, warmup
        self.steps_per_epoch, self.max_steps = steps_per_epoch, max_steps
        super().__init__(learning_rate=base_lr, last_epoch=-1)

    def get_lr(self) -> float:
        step = max(self.last_epoch, 0)
        lr = self.decay(self.base_lr, step, self.steps_per_epoch, self.max_steps)
        if self.warmup is not None:
            lr *= self.warmup.factor(step, self.steps_per_epoch)
        return lr


def build_lr(lr_cfg: Dict[str, Any], steps_per_epoch: int, epochs: int, batch_scale: float = 1.0) -> IterLR:
    """The schedule from ``LearningRate``; ``batch_scale`` multiplies ``base_lr`` (auto LR scaling)."""
    if not lr_cfg or "base_lr" not in lr_cfg:
        raise ConfigError("LearningRate.base_lr is required (e.g. LearningRate: {base_lr: 0.005, schedulers: [...]})")
    decay, warmup = None, None
    for i, sched in enumerate(lr_cfg.get("schedulers", [])):
        if not isinstance(sched, dict) or "name" not in sched:
            raise ConfigError(f"LearningRate.schedulers[{i}] must be a tagged mapping such as "
                              f"!PiecewiseDecay {{gamma: 0.1, milestones: [8, 11]}}; got {sched!r}")
        obj = create(sched["name"], sched, where=f"LearningRate.schedulers[{i}]")
        if isinstance(obj, LinearWarmup):
            warmup = obj
        else:
            decay = obj
    decay = decay or PiecewiseDecay(milestones=[])
    return IterLR(float(lr_cfg["base_lr"]) * batch_scale, decay, warmup, steps_per_epoch,
                  max(1, epochs * steps_per_epoch))


def build_optimizer(opt_cfg: Dict[str, Any], lr: IterLR, model: paddle.nn.Layer) -> paddle.optimizer.Optimizer:
    """Momentum (or another ``paddle.optimizer`` type) with L2 decay and optional global-norm clipping."""
    opt_cfg = dict(opt_cfg or {})
    reg = opt_cfg.get("regularizer")
    decay = None
    if reg:
        kind = reg.get("type", "L2")
        if kind not in ("L2", "L1"):
            raise ConfigError(f"OptimizerBuilder.regularizer.type {kind!r} is not one of L2, L1")
        cls = paddle.regularizer.L2Decay if kind == "L2" else paddle.regularizer.L1Decay
        decay = cls(float(reg.get("factor", 0.0)))
    clip = opt_cfg.get("clip_grad_by_norm")
    grad_clip = paddle.nn.ClipGradByGlobalNorm(clip_norm=float(clip)) if clip else None
    optim = dict(opt_cfg.get("optimizer", {"type": "Momentum", "momentum": 0.9}))
    kind = optim.pop("type", "Momentum")
    if not hasattr(paddle.optimizer, kind):
        raise ConfigError(f"OptimizerBuilder.optimizer.type {kind!r} is not a paddle.optimizer class")
    if kind == "AdamW":  # decoupled decay takes a float coefficient
        optim.setdefault("weight_decay", float(reg.get("factor", 0.0)) if reg else 0.0)
    elif decay is not None:
        optim["weight_decay"] = decay
    params = [p for p in model.parameters() if not p.stop_gradient]
    return getattr(paddle.optimizer, kind)(learning_rate=lr, parameters=params, grad_clip=grad_clip, **optim)


class ModelEMA:
    """Exponential moving average of every state tensor (parameters and BN statistics).

    ``threshold`` decay (PaddleDetection's default): ``min(decay, (1 + step) / (10 + step))``, so the
    average follows the weights closely early in training. Starts from zeros and divides by
    ``1 - d**step`` when read, as PaddleDetection does, so its checkpoints mean the same thing.
    """

    def __init__(self, model: paddle.nn.Layer, decay: float = 0.9998, ema_decay_type: str = "threshold"):
        self.decay, self.ema_decay_type, self.step = decay, ema_decay_type, 0
        self._last_decay = decay
        self.model = model
        self.live = model.state_dict()  # the model's own tensors, looked up once
        self.state = {k: paddle.zeros_like(v) for k, v in self.live.items()}

    def _decay_now(self) -> float:
        if self.ema_decay_type == "threshold":
            return min(self.decay, (1 + self.step) / (10 + self.step))
        if self.ema_decay_type == "exponential":
            return self.decay * (1 - math.exp(-(self.step + 1) / 2000))
        return self.decay

    def reset(self) -> None:
        """Start the average again from zeros (``cycle_epoch``)."""
        self.step, self._last_decay = 0, self.decay
        self.state = {k: paddle.zeros_like(v) for k, v in self.live.items()}

    @paddle.no_grad()
    def update(self) -> None:
        d = self._decay_now()
        self._last_decay = d
        for k, v in self.state.items():
            self.state[k] = d * v + (1 - d) * self.live[k]
        self.step += 1

    def apply(self) -> Dict[str, paddle.Tensor]:
        """The averaged weights, ready for ``set_state_dict``."""
        if self.step == 0:
            return {k: v.clone() for k, v in self.live.items()}
        if self.ema_decay_type == "exponential":
            return dict(self.state)
        correction = 1 - self._last_decay ** self.step
        return {k: v / correction for k, v in self.state.items()}

    def state_dict(self) -> Dict[str, Any]:
        return {"step": self.step, "last_decay": self._last_decay, "state": self.state}

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        self.step, self._last_decay = int(state["step"]), float(state["last_decay"])
        self.state = {k: paddle.to_tensor(v) for k, v in state["state"].items()}

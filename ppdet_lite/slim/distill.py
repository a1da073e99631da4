"""Knowledge distillation for YOLO detectors: ``DistillYOLOv3Loss`` (heads),
``NeckFeatureDistillLoss`` (neck maps) and the ``DistillModel`` wrapper.

The student trains on its task loss plus ``DistillYOLOv3Loss`` (PaddleDetection's terms, after
"Object detection at 200 FPS"), computed per level from raw head outputs split per anchor into
x, y, w, h, obj [N,na,H,W,1] and cls [N,na,H,W,nc] (``YOLOv3Loss.distill_pairs``' layout):

  reg = mean((BCE(sx, σ(tx)) + BCE(sy, σ(ty)) + |sw−tw| + |sh−th|) · σ(tobj))
  cls = mean(BCE(scls, σ(tcls)) · σ(tobj))
  obj = mean(BCE(sobj, tobj > 0))
  loss = weight · Σ_levels (reg + cls + obj)          (weight 1000 in PaddleDetection)

``obj_weighted=False`` drops the σ(tobj) factor (reg and cls averaged over every cell and anchor).
``NeckFeatureDistillLoss`` instead matches the neck's output maps, the maps the heads read: the
student's, through a trainable 1×1 adapter conv where the channels differ, against the teacher's,
both standardized per channel over N×H×W (PKD, "General Distillation Framework for Object Detectors
via Pearson Correlation Coefficient"), so channels of any scale count alike:

  loss = weight · Σ_levels mean((z(adapter(s)) − z(t))²) / 2        z: (x − mean_NHW) / std_NHW

The teacher is frozen: eval mode (BatchNorm running statistics, no DropBlock) under
``paddle.no_grad()``. PaddleDetection's DistillModel lets the trainer switch its teacher to train
mode, so its BatchNorm statistics drift during distillation; here they do not. Teacher and student
must share anchors, levels and classes (x, y, w, h are offsets relative to those anchors).
"""
from typing import Callable, Dict, List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..core.errors import ConfigError
from ..core.registry import register

__all__ = ["DistillYOLOv3Loss", "NeckFeatureDistillLoss", "DistillModel", "distill_wrapper",
           "split_head_output", "head_pairs", "head_channels"]

Pairs = List[List[paddle.Tensor]]
Feats = List[paddle.Tensor]


def split_head_output(p: paddle.Tensor, num_anchors: int, num_classes: int) -> List[paddle.Tensor]:
    """One raw head map [N, na·(5+nc) (+na IoU channels first), H, W] → [x, y, w, h, obj, cls]."""
    b, c, h, w = p.shape
    if c == num_anchors * (num_classes + 6):  # IoU-aware head: drop the IoU logits
        p = p[:, num_anchors:]
    elif c != num_anchors * (num_classes + 5):
        raise ValueError(f"head map has {c} channels; expected {num_anchors}·({num_classes}+5)")
    p = p.reshape([b, num_anchors, -1, h, w]).transpose([0, 1, 3, 4, 2])
    return paddle.split(p, [1, 1, 1, 1, 1, num_classes], axis=-1)


def neck_feats(model: nn.Layer, inputs: Dict[str, paddle.Tensor]) -> Feats:
    """The maps a YOLOv3 ``model``'s head reads, one per level (deepest first), in its current mode."""
    if getattr(model, "data_format", "NCHW") == "NHWC":
        inputs = dict(inputs, image=paddle.transpose(inputs["image"], [0, 2, 3, 1]))
    feats = model.neck(model.backbone(inputs))
    return feats["yolo_feats"] if isinstance(feats, dict) else feats


def head_pairs(model: nn.Layer, inputs: Dict[str, paddle.Tensor], feats: Feats = None) -> Pairs:
    """Per level [x, y, w, h, obj, cls] raw logits of a YOLOv3 ``model`` in its current mode
    (from ``feats``, its ``neck_feats``, when given)."""
    feats = neck_feats(model, inputs) if feats is None else feats
    head = model.yolo_head
    pairs = []
    for feat, conv, anchors in zip(feats, head.yolo_outputs, head.anchors):
        out = conv(feat)
        if head.data_format == "NHWC":
            out = out.transpose([0, 3, 1, 2])
        pairs.append(split_head_output(out, len(anchors), head.num_classes))
    return pairs


def head_channels(model: nn.Layer) -> List[int]:
    """Channels of the maps the head reads, per level: its output convs' inputs (true after pruning)."""
    return [int(conv.weight.shape[1]) for conv in model.yolo_head.yolo_outputs]  # [out, in, kh, kw]


@register
class DistillYOLOv3Loss(nn.Layer):
    """``forward(teacher_pairs, student_pairs)`` → scalar distillation loss (module docstring)."""
    inputs = "head"  # what DistillModel feeds it: per level [x, y, w, h, obj, cls] (``head_pairs``)

    def __init__(self, weight: float = 1000., obj_weighted: bool = True):
        super().__init__()
        self.loss_weight = weight
        self.obj_weighted = obj_weighted

    def obj_weighted_reg(self, s, t):
        bce = F.binary_cross_entropy_with_logits
        loss = (bce(s[0], F.sigmoid(t[0]), reduction="none")
                + bce(s[1], F.sigmoid(t[1]), reduction="none")
                + paddle.abs(s[2] - t[2]) + paddle.abs(s[3] - t[3]))
        return paddle.mean(loss * F.sigmoid(t[4]) if self.obj_weighted else loss)

    def obj_weighted_cls(self, scls, tcls, tobj):
        loss = F.binary_cross_entropy_with_logits(scls, F.sigmoid(tcls), reduction="none")
        return paddle.mean(loss * F.sigmoid(tobj) if self.obj_weighted else loss)

    @staticmethod
    def obj_loss(sobj, tobj):
        mask = paddle.cast(tobj > 0., sobj.dtype)
        mask.stop_gradient = True
        return paddle.mean(F.binary_cross_entropy_with_logits(sobj, mask, reduction="none"))

    def forward(self, teacher_pairs: Pairs, student_pairs: Pairs) -> paddle.Tensor:
        if len(teacher_pairs) != len(student_pairs):
            raise ValueError(f"teacher has {len(teacher_pairs)} head levels, student "
                             f"{len(student_pairs)}; distillation needs the same levels")
        terms = []
        for t, s in zip(teacher_pairs, student_pairs):
            if t[5].shape != s[5].shape:
                raise ValueError(f"teacher head level {t[5].shape} != student {s[5].shape}: "
                                 "anchors per level, classes and strides must match")
            terms += [self.obj_weighted_reg(s, t), self.obj_weighted_cls(s[5], t[5], t[4]),
                      self.obj_loss(s[4], t[4])]
        return paddle.add_n(terms) * self.loss_weight


def standardize(x: paddle.Tensor, eps: float = 1e-6) -> paddle.Tensor:
    """[N, C, H, W] → zero mean, unit variance per channel over N, H, W."""
    mean = paddle.mean(x, axis=[0, 2, 3], keepdim=True)
    std = paddle.sqrt(paddle.mean((x - mean) ** 2, axis=[0, 2, 3], keepdim=True) + eps)
    return (x - mean) / std


@register
class NeckFeatureDistillLoss(nn.Layer):
    """``forward(teacher_feats, student_feats)`` → scalar loss on the neck maps (module docstring).

    ``student_channels`` / ``teacher_channels``: per level, deepest first (``head_channels``; the
    builder fills them); a level whose channels differ gets a 1×1 conv adapter, trained with the
    student and dropped after training (the student's checkpoint holds the student only).
    """
    inputs = "neck"  # what DistillModel feeds it: the maps each head level reads (``neck_feats``)

    def __init__(self, student_channels: Sequence[int] = (), teacher_channels: Sequence[int] = (),
                 weight: float = 10.):
        super().__init__()
        if not student_channels or len(student_channels) != len(teacher_channels):
            raise ConfigError(f"NeckFeatureDistillLoss: student_channels {list(student_channels)} and "
                              f"teacher_channels {list(teacher_channels)} need one entry per head level")
        self.loss_weight = weight
        self.adapters = nn.LayerList([
            nn.Conv2D(s, t, 1) if s != t else nn.Identity()
            for s, t in zip(student_channels, teacher_channels)])

    def forward(self, teacher_feats: Feats, student_feats: Feats) -> paddle.Tensor:
        if len(teacher_feats) != len(student_feats):
            raise ValueError(f"teacher has {len(teacher_feats)} neck levels, student "
                             f"{len(student_feats)}; distillation needs the same levels")
        terms = []
        for t, s, adapt in zip(teacher_feats, student_feats, self.adapters):
            s = adapt(s)
            if t.shape != s.shape:
                raise ValueError(f"teacher neck map {t.shape} != adapted student map {s.shape}")
            terms.append(paddle.mean((standardize(s) - standardize(t)) ** 2) / 2)
        return paddle.add_n(terms) * self.loss_weight


def check_compatible(teacher: nn.Layer, student: nn.Layer) -> None:
    """Teacher and student heads must predict the same thing per cell and anchor."""
    th, sh = teacher.yolo_head, student.yolo_head
    for what in ("anchors", "num_classes"):
        if getattr(th, what) != getattr(sh, what):
            raise ConfigError(
                f"distillation: teacher YOLOv3Head.{what} {getattr(th, what)} differs from the "
                f"student's {getattr(sh, what)}. DistillYOLOv3Loss compares raw x, y, w, h, obj and "
                "class logits anchor by anchor, so both must use the same anchors, anchor_masks "
                "(levels) and num_classes; pick a teacher of the same family (e.g. PP-YOLO MBv3-large "
                "for MBv3-small) or set the student's anchors to the teacher's")
    if list(getattr(teacher.yolo_head.loss, "downsample", [])) != \
            list(getattr(student.yolo_head.loss, "downsample", [])):
        raise ConfigError("distillation: teacher and student YOLOv3Loss.downsample differ; the "
                          "head levels must have the same strides")


class DistillModel(nn.Layer):
    """Student + frozen teacher. Training: the student's loss dict plus ``distill_loss`` (added
    to ``loss``); eval: the student's outputs. The student's parameters train, and the loss's own
    (a feature adapter); the teacher's never do.

    Plug into a ``Trainer`` as its ``train_wrapper`` (its ``model`` stays the student, so
    checkpoints, EMA and evaluation see the student alone): see ``distill_wrapper``.
    """

    def __init__(self, student: nn.Layer, teacher: nn.Layer, distill_loss: nn.Layer):
        super().__init__()
        check_compatible(teacher, student)
        self.student_model = student
        self.teacher_model = teacher
        self.distill_loss = distill_loss
        for p in teacher.parameters():
            p.stop_gradient = True
        teacher.eval()

    def train(self):
        super().train()
        self.teacher_model.eval()
        return self

    def parameters(self, include_sublayers: bool = True):
        return (self.student_model.parameters(include_sublayers)
                + self.distill_loss.parameters(include_sublayers))

    def forward(self, inputs: Dict[str, paddle.Tensor]) -> Dict[str, paddle.Tensor]:
        if not self.training:
            return self.student_model(inputs)
        if getattr(self.distill_loss, "inputs", "head") == "neck":
            kept = []  # the maps the student's head reads, from its own forward
            hook = self.student_model.neck.register_forward_post_hook(
                lambda layer, x, out: kept.append(out["yolo_feats"] if isinstance(out, dict) else out))
            try:
                losses = dict(self.student_model(inputs))
            finally:
                hook.remove()
            with paddle.no_grad():
                teacher = neck_feats(self.teacher_model, inputs)
            student = kept[-1]
        else:
            losses = dict(self.student_model(inputs))
            with paddle.no_grad():
                teacher = head_pairs(self.teacher_model, inputs)
            student = self.student_model.yolo_head.loss.distill_pairs
        losses["distill_loss"] = self.distill_loss(teacher, student)
        losses["loss"] = losses["loss"] + losses["distill_loss"]
        return losses


def distill_wrapper(teacher: nn.Layer, distill_loss: nn.Layer) -> Callable[[nn.Layer], DistillModel]:
    """``Trainer(cfg, model=student, train_wrapper=distill_wrapper(teacher, loss))``: the training
    step runs a ``DistillModel`` around the student; checkpoints, EMA and evaluation see the student."""
    return lambda student: DistillModel(student, teacher, distill_loss)


def teacher_from(cfg: Dict, weights: str) -> nn.Layer:
    """Build the model of ``cfg`` and load ``weights`` into it (a frozen teacher)."""
    from ..engine.checkpoint import load_weights
    from ..modeling import build_model

    if not weights:
        raise ConfigError(f"{cfg.get('_path', '<slim config>')}: the teacher needs weights: set "
                          "pretrain_weights in the Distill slim config (or pass --teacher_weights)")
    model = build_model(cfg)
    report = load_weights(model, weights)
    if report["head_skipped"]:
        raise ConfigError(f"teacher weights {weights} were trained for another num_classes "
                          f"({report['head_skipped'][0]}); a teacher needs all of its weights")
    model.eval()
    return model


def build_distill_loss(slim_cfg: Dict, name: Optional[str] = None, changes: Optional[Dict] = None,
                       teacher: Optional[nn.Layer] = None, student: Optional[nn.Layer] = None) -> nn.Layer:
    """The slim config's ``distill_loss`` (or ``name``) built from its section with ``changes``
    over it; defaults to ``DistillYOLOv3Loss(weight=1000)``. A neck loss needs ``teacher`` and
    ``student`` (their per-level channels size its adapters)."""
    from ..core.registry import create, lookup

    name = name or slim_cfg.get("distill_loss") or "DistillYOLOv3Loss"
    where = f"{slim_cfg.get('_path', 'slim config')}: {name}"
    kwargs = dict(slim_cfg.get(name) or {}, **(changes or {}))
    if getattr(lookup(name, where), "inputs", "head") == "neck":
        if teacher is None or student is None:
            raise ConfigError(f"{where}: a neck feature loss needs the teacher and the student")
        return create(name, kwargs, where=where, student_channels=head_channels(student),
                      teacher_channels=head_channels(teacher))
    return create(name, kwargs, where=where)


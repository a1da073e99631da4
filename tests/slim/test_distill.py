"""Distillation: DistillYOLOv3Loss against PaddleDetection's, the teacher-frozen DistillModel, the
Trainer's train_wrapper, and how Distill slim configs split teacher and student."""
import os

import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.slim import DistillModel, DistillYOLOv3Loss, load_slim_config
from ppdet_lite.slim.distill import distill_wrapper, head_pairs

from .helpers import ROOT, fixed_batch, overrides, tiny_cfg

DISTILL_PRUNE = os.path.join(ROOT, "configs", "slim", "distill", "ppyolo_tiny_shapes_distill_prune.yml")


def random_pairs(rng, levels=((3, 3), (6, 6)), na=3, nc=4):
    pairs = []
    for h, w in levels:
        parts = [rng.standard_normal((2, na, h, w, 1)).astype("float32") * 2 for _ in range(5)]
        parts.append(rng.standard_normal((2, na, h, w, nc)).astype("float32") * 2)
        pairs.append([paddle.to_tensor(p) for p in parts])
    return pairs


def test_distill_loss_equals_paddledetection():
    pytest.importorskip("ppdet", reason="PaddleDetection (the oracle) is not installed")
    from types import SimpleNamespace

    from ppdet.slim.distill_loss import DistillYOLOv3Loss as Reference

    rng = np.random.default_rng(0)
    teacher, student = random_pairs(rng), random_pairs(rng)
    def holder(pairs):  # what PaddleDetection's loss reads: model.yolo_head.loss.distill_pairs
        return SimpleNamespace(yolo_head=SimpleNamespace(loss=SimpleNamespace(distill_pairs=pairs)))

    want = float(Reference(weight=1000)(holder(teacher), holder(student)))
    got = float(DistillYOLOv3Loss(weight=1000)(teacher, student))
    assert got == pytest.approx(want, rel=1e-5)
    assert float(DistillYOLOv3Loss(weight=1000)(teacher, teacher)) < got


def test_mismatched_levels_are_reported():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="same levels"):
        DistillYOLOv3Loss()(random_pairs(rng), random_pairs(rng)[:1])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    paddle.set_device("cpu")
    paddle.seed(0)
    tmp = tmp_path_factory.mktemp("distill")
    cfg = tiny_cfg(tmp, **{"YOLOv3Head.obj_bias_init": 0.0, "YOLOv3Head.cls_bias_init": 0.0})
    from ppdet_lite.engine.trainer import Trainer

    trainer = Trainer(cfg, "train", seed=0)
    return cfg, trainer, fixed_batch(trainer)


def test_head_pairs_are_the_losses_distill_pairs(setup):
    cfg, _, batch = setup
    model = ppdet_lite.build_model(cfg)
    model.train()
    model(batch)
    from_loss = [[p.numpy() for p in level] for level in model.yolo_head.loss.distill_pairs]
    direct = [[p.numpy() for p in level] for level in head_pairs(model, batch)]
    for a_level, b_level in zip(from_loss, direct):
        for a, b in zip(a_level, b_level):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_distillation_lowers_its_loss_and_leaves_the_teacher_untouched(setup):
    cfg, _, batch = setup
    paddle.seed(1)
    teacher = ppdet_lite.build_model(cfg)
    paddle.seed(2)
    student = ppdet_lite.build_model(cfg)
    before = {k: v.numpy().copy() for k, v in teacher.state_dict().items()}
    model = DistillModel(student, teacher, DistillYOLOv3Loss(weight=1000))
    opt = paddle.optimizer.Adam(learning_rate=0.003, parameters=student.parameters())
    model.train()
    assert not teacher.training and student.training
    distill = []
    for _ in range(8):
        losses = model(batch)
        assert float(losses["loss"]) == pytest.approx(
            float(sum(v for k, v in losses.items() if k not in ("loss",))), rel=1e-4)
        losses["loss"].backward()
        opt.step()
        opt.clear_grad()
        distill.append(float(losses["distill_loss"]))
    assert np.isfinite(distill).all()
    assert distill[-1] < 0.7 * distill[0], distill
    for k, v in teacher.state_dict().items():  # weights and BatchNorm statistics
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
    assert all(p.grad is None for p in teacher.parameters())
    model.eval()
    out = model({k: batch[k] for k in ("image", "im_shape", "scale_factor")})
    assert set(out) == {"bbox", "bbox_num"}


def test_a_teacher_with_other_anchors_is_rejected(setup):
    cfg, _, _ = setup
    student = ppdet_lite.build_model(cfg)
    anchors = [[a + 5, b + 5] for a, b in cfg["YOLOv3Head"]["anchors"]]
    reader = dict(cfg["TrainReader"], batch_transforms=[
        {"Gt2YoloTarget": dict(op["Gt2YoloTarget"], anchors=anchors)} if "Gt2YoloTarget" in op else op
        for op in cfg["TrainReader"]["batch_transforms"]])  # a consistent config of its own
    teacher = ppdet_lite.build_model(dict(cfg, YOLOv3Head=dict(cfg["YOLOv3Head"], anchors=anchors),
                                          TrainReader=reader))
    with pytest.raises(ConfigError, match="anchors"):
        DistillModel(student, teacher, DistillYOLOv3Loss())


def test_trainer_wrapper_trains_and_checkpoints_the_student_only(setup, tmp_path):
    from ppdet_lite.engine.trainer import Trainer

    cfg, _, _ = setup
    teacher = ppdet_lite.build_model(cfg)
    before = {k: v.numpy().copy() for k, v in teacher.state_dict().items()}
    trainer = Trainer(cfg.__class__({**cfg, "save_dir": str(tmp_path)}), "train", seed=0,
                      train_wrapper=distill_wrapper(teacher, DistillYOLOv3Loss()))
    wrapper = trainer.train_model
    assert isinstance(wrapper, DistillModel) and wrapper.student_model is trainer.model
    trainer.train(validate=False)
    assert "distill_loss" in trainer.losses and float(trainer.losses["distill_loss"]) > 0
    saved = paddle.load(os.path.join(str(tmp_path), cfg["filename"], "model_final.pdparams"))
    assert set(saved) == set(trainer.model.state_dict())
    for k, v in teacher.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_distill_slim_config_splits_teacher_and_student(tmp_path):
    demo = os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml")
    cfg, teacher = load_slim_config(demo, DISTILL_PRUNE)
    assert cfg["slim"] == "DistillPrune" and cfg["filename"] == "ppyolo_tiny_shapes_distill_prune"
    assert teacher["pretrain_weights"] == "output/ppyolo_tiny_x1_shapes/best_model"
    assert teacher["MobileNetV3"]["scale"] == 1.0 and cfg["MobileNetV3"]["scale"] == 0.5
    assert teacher["YOLOv3Head"]["anchors"] == cfg["YOLOv3Head"]["anchors"]  # heads distil anchor by anchor
    assert cfg["pretrain_weights"] == ""            # the student's own, not the teacher's
    assert cfg["weights"] == "output/ppyolo_tiny_shapes/best_model"  # where prune_distill starts it
    assert cfg["epoch"] == 4 and cfg["LearningRate"]["base_lr"] == 0.002  # written in the slim file
    assert "Pruner" not in cfg and teacher["Pruner"]["criterion"] == "fpgm"
    cfg, _ = load_slim_config(demo, DISTILL_PRUNE, overrides(str(tmp_path), epoch=7))
    assert cfg["epoch"] == 7                          # the command line wins
    with pytest.raises(ConfigError, match="slim"):
        load_slim_config(demo, demo)


def test_build_slim_trainer_wraps_the_student_with_the_slim_files_teacher(setup, tmp_path):
    from ppdet_lite.engine.checkpoint import save_checkpoint
    from ppdet_lite.slim.builder import build_slim_trainer

    cfg, _, _ = setup
    paddle.seed(5)
    teacher = ppdet_lite.build_model(cfg)
    weights = save_checkpoint(str(tmp_path / "teacher"), "best_model", teacher.state_dict())
    distill = os.path.join(ROOT, "configs", "slim", "distill", "ppyolo_tiny_shapes_distill.yml")
    student_cfg, slim_cfg = load_slim_config(os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml"), distill,
                                             overrides(str(tmp_path)))
    slim_cfg["pretrain_weights"] = weights
    trainer = build_slim_trainer(student_cfg, slim_cfg, seed=0)
    wrapper = trainer.train_model
    assert isinstance(wrapper, DistillModel) and wrapper.student_model is trainer.model
    assert wrapper.distill_loss.loss_weight == 100                     # the slim file's DistillYOLOv3Loss
    key = "yolo_head.yolo_output.0.weight"
    np.testing.assert_array_equal(wrapper.teacher_model.state_dict()[key].numpy(),
                                  teacher.state_dict()[key].numpy())


def test_unweighted_yolo_distillation_drops_only_the_teacher_objectness_factor():
    rng = np.random.default_rng(2)
    teacher, student = random_pairs(rng), random_pairs(rng)
    weighted, unweighted = DistillYOLOv3Loss(weight=1.), DistillYOLOv3Loss(weight=1., obj_weighted=False)
    sure = [level[:4] + [paddle.full_like(level[4], 30.)] + level[5:] for level in teacher]  # σ(tobj) = 1
    for t, s, t1 in zip(teacher, student, sure):
        terms = [lambda loss, t: loss.obj_weighted_reg(s, t), lambda loss, t: loss.obj_weighted_cls(s[5], t[5], t[4])]
        for term in terms:  # reg and cls: weighted by σ(tobj) or not; equal where σ(tobj) = 1
            assert float(term(unweighted, t)) > 1.5 * float(term(weighted, t))
            assert float(term(unweighted, t1)) == pytest.approx(float(term(weighted, t1)), rel=1e-6)
    assert float(unweighted(sure, student)) == pytest.approx(float(weighted(sure, student)), rel=1e-6)


def standardized_mse(t, s):
    """NeckFeatureDistillLoss's term, in numpy: channels standardized over N, H, W."""
    def z(x):
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        return (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=(0, 2, 3), keepdims=True) + 1e-6)
    return float(((z(s) - z(t)) ** 2).mean() / 2)


def test_neck_feature_loss_is_a_standardized_mse_with_adapters_where_channels_differ():
    from ppdet_lite.slim import NeckFeatureDistillLoss

    rng = np.random.default_rng(3)
    teacher = [rng.standard_normal((2, c, h, h)).astype("float32") for c, h in ((8, 3), (4, 6))]
    student = [rng.standard_normal((2, c, h, h)).astype("float32") for c, h in ((5, 3), (4, 6))]
    loss = NeckFeatureDistillLoss(student_channels=[5, 4], teacher_channels=[8, 4], weight=2.)
    assert isinstance(loss.adapters[0], paddle.nn.Conv2D) and isinstance(loss.adapters[1], paddle.nn.Identity)
    adapted = loss.adapters[0](paddle.to_tensor(student[0])).numpy()
    want = 2. * (standardized_mse(teacher[0], adapted) + standardized_mse(teacher[1], student[1]))
    got = float(loss([paddle.to_tensor(t) for t in teacher], [paddle.to_tensor(s) for s in student]))
    assert got == pytest.approx(want, rel=1e-4)
    # a per-channel scale and shift of the teacher's maps is nothing to learn
    same = NeckFeatureDistillLoss(student_channels=[4], teacher_channels=[4])
    t = paddle.to_tensor(teacher[1])
    assert float(same([t * 3. + 1.], [t])) == pytest.approx(0., abs=1e-6)
    with pytest.raises(ConfigError, match="one entry per head level"):
        NeckFeatureDistillLoss(student_channels=[5, 4], teacher_channels=[8])


@pytest.fixture(scope="module")
def wide_teacher(setup):
    """A teacher of another width (MobileNetV3 at scale 1.0, the neck's first and last levels
    wider and narrower), same anchors and levels."""
    cfg, _, _ = setup
    paddle.seed(3)
    return ppdet_lite.build_model(dict(cfg, MobileNetV3=dict(cfg["MobileNetV3"], scale=1.0),
                                       PPYOLOTinyFPN=dict(cfg["PPYOLOTinyFPN"],
                                                          detection_block_channels=[192, 128, 64])))


def test_neck_distillation_trains_the_student_and_adapters_never_the_teacher(setup, wide_teacher):
    from ppdet_lite.slim import build_distill_loss, load_slim_config
    from ppdet_lite.slim.distill import head_channels

    cfg, _, batch = setup
    student = ppdet_lite.build_model(cfg)
    _, slim = load_slim_config(os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml"), DISTILL_PRUNE)
    loss = build_distill_loss(slim, "NeckFeatureDistillLoss", {"weight": 5.}, wide_teacher, student)
    assert head_channels(wide_teacher) == [192, 128, 64] and head_channels(student) == [160, 128, 96]
    assert [list(a.weight.shape[:2]) if isinstance(a, paddle.nn.Conv2D) else None for a in loss.adapters] \
        == [[192, 160], None, [64, 96]]
    before = {k: v.numpy().copy() for k, v in wide_teacher.state_dict().items()}
    model = DistillModel(student, wide_teacher, loss)
    model.train()
    losses = model(batch)
    assert float(losses["distill_loss"]) > 0
    losses["loss"].backward()
    assert all(p.grad is None for p in wide_teacher.parameters())
    assert all(p.grad is not None for p in loss.parameters())
    assert student.backbone.conv1.conv.weight.grad is not None  # through the neck maps and the task loss
    ids = {id(p) for p in model.parameters()}
    assert all(id(p) in ids for p in loss.parameters()) and not any(id(p) in ids for p in wide_teacher.parameters())
    for k, v in wide_teacher.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)
    assert not student.neck._forward_post_hooks  # the hook that kept the student's maps is gone


def test_trainer_optimizes_the_adapters_and_checkpoints_the_student_only(setup, wide_teacher, tmp_path):
    from ppdet_lite.engine.trainer import Trainer
    from ppdet_lite.slim import NeckFeatureDistillLoss
    from ppdet_lite.slim.distill import head_channels

    cfg, _, _ = setup
    student = ppdet_lite.build_model(cfg)
    loss = NeckFeatureDistillLoss(head_channels(student), head_channels(wide_teacher), weight=5.)
    adapter = loss.adapters[0].weight.numpy().copy()
    trainer = Trainer(cfg.__class__({**cfg, "save_dir": str(tmp_path)}), "train", seed=0, model=student,
                      train_wrapper=distill_wrapper(wide_teacher, loss))
    trained = {id(p) for p in trainer.optimizer._parameter_list}
    assert all(id(p) in trained for p in loss.parameters())
    assert not any(id(p) in trained for p in wide_teacher.parameters())
    trainer.train(validate=False)
    assert np.abs(loss.adapters[0].weight.numpy() - adapter).max() > 0
    saved = paddle.load(os.path.join(str(tmp_path), cfg["filename"], "model_final.pdparams"))
    assert set(saved) == set(student.state_dict())

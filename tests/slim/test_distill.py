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
    assert teacher["pretrain_weights"] == "output/ppyolo_tiny_shapes/best_model"
    assert cfg["pretrain_weights"] == ""            # the student's own, not the teacher's
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

"""Trainer options: NaN stop, LR auto-scaling, training-time eval bounds, VisualDL scalars, classwise eval."""
import os
import subprocess
import sys

import numpy as np
import pytest

from ppdet_lite.engine.optimizer import build_lr
from ppdet_lite.engine.hooks import EvalHook, HookBase
from ppdet_lite.engine.trainer import Trainer

from .helpers import DEMO, ROOT, tiny_cfg


def test_nan_loss_stops_with_step_terms_and_last_checkpoint(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epoch=2), seed=0)
    trainer.train()  # writes model_final
    trainer2 = Trainer(tiny_cfg(tmp_path, epoch=3), seed=0)
    trainer2.resume(os.path.join(trainer.save_dir, "model_final"))
    bias = trainer2.model.yolo_head.yolo_outputs[0].bias   # a diverged weight: the loss becomes NaN
    bias.set_value(np.full(bias.shape, np.nan, "float32"))
    with pytest.raises(FloatingPointError) as e:
        trainer2.train()
    msg = str(e.value)
    assert "epoch 2, iteration" in msg and "loss=" in msg and "loss_obj=" in msg
    assert os.path.join(trainer.save_dir, "model_final") in msg


def test_schedule_and_auto_scaled_lr():
    lr = build_lr({"base_lr": 0.01, "schedulers": [{"name": "PiecewiseDecay", "gamma": 0.1, "milestones": [2, 3]},
                                                  {"name": "LinearWarmup", "start_factor": 0.0, "steps": 4}]},
                  steps_per_epoch=5, epochs=4)
    got = []
    for _ in range(20):
        got.append(lr.get_lr())
        lr.step()
    np.testing.assert_allclose(got[:5], [0.0, 0.0025, 0.005, 0.0075, 0.01], rtol=1e-9)
    assert got[9] == pytest.approx(0.01) and got[10] == pytest.approx(0.001) and got[15] == pytest.approx(1e-4)
    scaled = build_lr({"base_lr": 0.01}, steps_per_epoch=5, epochs=4, batch_scale=0.25)
    assert scaled.get_lr() == pytest.approx(0.0025)


def test_auto_scale_lr_uses_total_batch_over_reference(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, auto_scale_lr=True, reference_batch_size=32), seed=0)
    assert trainer.lr.base_lr == pytest.approx(0.01 * 8 / 32)


def test_training_eval_bounds_the_nms_it_runs_and_restores_it(tmp_path, monkeypatch):
    trainer = Trainer(tiny_cfg(tmp_path, **{"BBoxPostProcess.nms.nms_top_k": -1,
                                            "BBoxPostProcess.nms.score_threshold": 0.0,
                                            "BBoxPostProcess.decode.conf_thresh": 0.001}), seed=0)
    post = trainer.model.post_process
    nms_cls, decode_cls = type(post.nms), type(post.decode)
    seen = []

    def spy(real, name):  # the class attribute: Python calls type(obj).__call__, never an instance's
        def call(self, *args, **kwargs):
            seen.append((name, dict(vars(self))))
            return real(self, *args, **kwargs)
        return call

    monkeypatch.setattr(nms_cls, "__call__", spy(nms_cls.__call__, "nms"))
    monkeypatch.setattr(decode_cls, "__call__", spy(decode_cls.__call__, "decode"))
    evaluator = next(h for h in trainer.hooks if isinstance(h, EvalHook))
    evaluator.evaluate()                       # what the hook runs at a training-time snapshot
    nms_runs = [v for k, v in seen if k == "nms"]
    decode_runs = [v for k, v in seen if k == "decode"]
    assert len(nms_runs) == len(decode_runs) == 1    # 8 val images, EvalReader batch 8
    assert nms_runs[0]["nms_top_k"] == 1000 and nms_runs[0]["score_threshold"] == 0.01
    assert decode_runs[0]["conf_thresh"] == 0.01
    assert trainer.model.training, "the training-time eval returns the model to train mode"
    assert (post.nms.nms_top_k, post.nms.score_threshold, post.decode.conf_thresh) == (-1, 0.0, 0.001)
    seen.clear()
    trainer.evaluate()                         # tools/eval.py: the configured settings
    assert [(v["nms_top_k"], v["score_threshold"]) for k, v in seen if k == "nms"] == [(-1, 0.0)]
    assert [v["conf_thresh"] for k, v in seen if k == "decode"] == [0.001]


class StepLosses(HookBase):
    """Records each step's loss terms (a custom hook, registered after the default ones)."""

    def __init__(self):
        self.steps = []

    def after_step(self):
        self.steps.append((self.trainer.step, {k: float(v) for k, v in self.trainer.losses.items()}))


def test_visualdl_scalars_are_the_logged_losses_lr_and_eval(tmp_path):
    cfg = tiny_cfg(tmp_path, epoch=1, log_iter=2, use_vdl=True, vdl_log_dir=str(tmp_path / "vdl"),
                   **{"YOLOv3Head.obj_bias_init": 0.0, "YOLOv3Head.cls_bias_init": 0.0})
    record = StepLosses()
    trainer = Trainer(cfg, seed=0, hooks=[record])
    metrics = trainer.train(validate=True)
    from visualdl import LogReader

    files = os.listdir(tmp_path / "vdl")
    assert len(files) == 1
    reader = LogReader(file_path=str(tmp_path / "vdl" / files[0]))
    scalars = reader.get_tags()["scalar"]
    losses = list(record.steps[0][1])
    assert sorted(scalars) == sorted(["lr", "eval/AP", "eval/AP50"] + [f"loss/{k}" for k in losses])

    def read(tag):
        return [(r.id, r.value) for r in reader.get_data("scalar", tag)]

    # 2 steps (16 images, batch 8), both logged (step 0 and the epoch's last); warm-up 0.1 -> 1
    # over 2 steps of base_lr 0.01
    assert [s for s, _ in read("lr")] == [1, 2]
    np.testing.assert_allclose([v for _, v in read("lr")], [0.0055, 0.01], rtol=1e-6)
    for k in losses:  # medians over a window of log_iter = 2 steps
        first, second = record.steps[0][1][k], record.steps[1][1][k]
        want = [first, (first + second) / 2]
        assert [s for s, _ in read(f"loss/{k}")] == [1, 2]
        np.testing.assert_allclose([v for _, v in read(f"loss/{k}")], want, rtol=1e-5, err_msg=k)
    assert read("eval/AP")[0][0] == 1 and read("eval/AP")[0][1] == pytest.approx(metrics["AP"], abs=1e-7)
    assert read("eval/AP50")[0][1] == pytest.approx(metrics["AP50"], abs=1e-7)


def test_eval_tool_classwise_writes_table_pr_curves_and_confusion(tmp_path):
    cfg = tiny_cfg(tmp_path, epoch=1, **{"YOLOv3Head.obj_bias_init": 0.0, "YOLOv3Head.cls_bias_init": 0.0})
    trainer = Trainer(cfg, seed=0)
    trainer.train()
    weights = os.path.join(trainer.save_dir, "model_final")
    data = str(tmp_path / "shapes")
    out = tmp_path / "eval_out"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", "eval.py"), "-c", DEMO, "--classwise", "--output_eval", str(out),
         "-o", f"weights={weights}", f"EvalDataset.dataset_dir={data}", "EvalDataset.num_images=8",
         "EvalDataset.image_size=96", "YOLOv3Head.obj_bias_init=0.0", "YOLOv3Head.cls_bias_init=0.0"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AP50" in proc.stdout
    assert (out / "bbox.json").is_file() and (out / "confusion_matrix.png").is_file()
    assert len(os.listdir(out / "pr_curve")) == 3   # one per class of the demo set

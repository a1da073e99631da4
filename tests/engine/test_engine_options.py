"""Trainer options: NaN stop, LR auto-scaling, training-time eval cap, VisualDL, classwise eval."""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from ppdet_lite.engine.optimizer import LinearWarmup, PiecewiseDecay, build_lr
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


def test_training_eval_caps_boxes_and_restores_settings(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, **{"BBoxPostProcess.nms.nms_top_k": -1,
                                            "BBoxPostProcess.nms.score_threshold": 0.0}), seed=0)
    nms = trainer.model.post_process.nms
    seen = {}
    real = nms.__call__

    def spy(*args, **kwargs):
        seen.update(top_k=nms.nms_top_k, thr=nms.score_threshold)
        return real(*args, **kwargs)

    nms.__call__ = spy
    trainer.evaluate(training=True)
    if seen:  # the NMS object may be called through its class; check the values it ran with
        assert seen == {"top_k": 1000, "thr": 0.01}
    assert nms.nms_top_k == -1 and nms.score_threshold == 0.0
    with trainer._capped_post_process():
        assert nms.nms_top_k == 1000 and nms.score_threshold == 0.01


def test_visualdl_scalars_are_written(tmp_path):
    cfg = tiny_cfg(tmp_path, epoch=1, use_vdl=True, vdl_log_dir=str(tmp_path / "vdl"))
    Trainer(cfg, seed=0).train()
    files = os.listdir(tmp_path / "vdl")
    assert files and os.path.getsize(tmp_path / "vdl" / files[0]) > 0


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

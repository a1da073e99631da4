"""The hook trainer: event order, a custom hook plugging in, the NaN guard, the trainer's keys."""
import logging
import math
import os
import time
import types

import cv2
import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.engine.hooks import (BNRecalibrationHook, EMAHook, FreezeBNHook, HookBase, NaNGuardHook,
                                     recalibrate_bn)
from ppdet_lite.engine.report_hooks import SummaryHook
from ppdet_lite.engine.model_stats import count_params
from ppdet_lite.engine.trainer import Trainer, check_trainer_keys

from .helpers import tiny_cfg


class Recorder(HookBase):
    """Every event with where the loop is; at each epoch end, the weights the model holds."""

    def __init__(self):
        self.events, self.snapshot_weights = [], {}

    def before_train(self):
        self.events.append(("before_train",))

    def before_epoch(self):
        self.events.append(("before_epoch", self.trainer.epoch))

    def before_step(self):
        self.events.append(("before_step", self.trainer.epoch, self.trainer.iter, self.trainer.step))

    def after_step(self):
        self.events.append(("after_step", self.trainer.epoch, self.trainer.iter, self.trainer.step,
                            sorted(self.trainer.losses)[0]))

    def after_epoch(self):
        t = self.trainer
        self.events.append(("after_epoch", t.epoch, t.snapshot_due, t.final))
        self.snapshot_weights[t.epoch] = {k: v.numpy().copy() for k, v in t.model.state_dict().items()}

    def after_train(self):
        self.events.append(("after_train", self.trainer.finished))

    def state_dict(self):
        return {"recorder_events": len(self.events)}

    def load_state_dict(self, state):
        self.resumed_from = state.get("recorder_events")


def test_hooks_see_the_loop_in_order_and_the_ema_weights_at_a_snapshot(tmp_path):
    rec = Recorder()
    trainer = Trainer(tiny_cfg(tmp_path, epoch=2, snapshot_epoch=2), seed=0, hooks=[rec])
    assert trainer.hooks[-1] is rec and isinstance(trainer.hooks[0], NaNGuardHook)
    trainer.train()
    want = [("before_train",)]
    for epoch in range(2):
        want.append(("before_epoch", epoch))
        for it in range(2):  # 16 images, batch 8
            step = epoch * 2 + it
            want += [("before_step", epoch, it, step), ("after_step", epoch, it, step + 1, "loss")]
        want.append(("after_epoch", epoch, epoch == 1, epoch == 1))
    want.append(("after_train", True))
    assert rec.events == want
    # at the snapshot a later hook sees what is saved and evaluated: the EMA weights
    saved = paddle.load(os.path.join(trainer.save_dir, "model_final.pdparams"))
    raw = paddle.load(os.path.join(trainer.save_dir, "model_final.pdema"))
    key = "backbone.conv1.conv.weight"
    np.testing.assert_array_equal(rec.snapshot_weights[1][key], saved[key].numpy())
    assert not np.array_equal(saved[key].numpy(), raw[key].numpy())
    # not at epoch 0 (no snapshot), and after training the model holds the training weights again
    assert not np.array_equal(rec.snapshot_weights[0][key], saved[key].numpy())
    np.testing.assert_array_equal(trainer.model.state_dict()[key].numpy(), raw[key].numpy())
    # a hook's state goes into the checkpoint and comes back on resume
    opt = paddle.load(os.path.join(trainer.save_dir, "model_final.pdopt"))
    assert opt["trainer"]["recorder_events"] == len(want) - 2  # saved during the last after_epoch
    again = Recorder()
    resumed = Trainer(tiny_cfg(tmp_path, epoch=3), seed=0, hooks=[again])
    resumed.resume(os.path.join(trainer.save_dir, "model_final"))
    assert again.resumed_from == len(want) - 2
    clash = Recorder()
    clash.state_dict = lambda: {"ema": 1}  # a name the EMA hook's state already has
    resumed.register_hooks([clash])
    with pytest.raises(ValueError, match=r"Recorder.state_dict\(\) keys \['ema'\] are taken"):
        resumed.state_dict()


def test_nan_guard_names_the_step_terms_and_the_last_checkpoint(tmp_path):
    save_dir = tmp_path / "out"
    save_dir.mkdir()
    (save_dir / "0.pdparams").write_bytes(b"x")
    guard = NaNGuardHook()
    guard.trainer = types.SimpleNamespace(
        save_dir=str(save_dir), epoch=1, iter=3,
        losses={"loss": paddle.to_tensor(math.nan), "loss_xy": paddle.to_tensor(0.5)})
    with pytest.raises(FloatingPointError, match=r"epoch 1, iteration 3 \(loss=nan, loss_xy=0.5\)") as e:
        guard.after_step()
    assert os.path.join(str(save_dir), "0") in str(e.value)
    guard.trainer.losses["loss"] = paddle.to_tensor(2.0)
    guard.after_step()  # finite: nothing happens


def _nan_head(trainer):
    bias = trainer.model.yolo_head.yolo_outputs[0].bias
    bias.set_value(np.full(bias.shape, np.nan, "float32"))


def test_nan_check_false_trains_through_a_nan_loss(tmp_path):
    rec = Recorder()
    trainer = Trainer(tiny_cfg(tmp_path, epoch=1, nan_check=False, max_iters=1), seed=0, hooks=[rec])
    assert not any(isinstance(h, NaNGuardHook) for h in trainer.hooks)
    _nan_head(trainer)
    trainer.train()
    assert rec.events[-1] == ("after_train", True) and math.isnan(float(trainer.losses["loss"]))
    guarded = Trainer(tiny_cfg(tmp_path / "b", epoch=1, max_iters=1), seed=0)
    _nan_head(guarded)
    with pytest.raises(FloatingPointError, match="not finite"):
        guarded.train()


def test_cycle_epoch_restarts_the_ema_each_cycle(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epoch=2, cycle_epoch=1), seed=0)
    assert next(h for h in trainer.hooks if isinstance(h, EMAHook)).cycle_epoch == 1
    trainer.train()
    assert trainer.step == 4 and trainer.ema.step == 2  # restarted at epoch 1: its 2 steps only


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_print_params_and_flops_log_the_model_size(tmp_path):
    capture = _Capture()
    logging.getLogger("ppdet_lite").addHandler(capture)
    cfg = tiny_cfg(tmp_path, epoch=1, max_iters=1, print_params=True, print_flops=True,
                   **{"EvalReader.sample_transforms": [{"Decode": {}}, {"Resize": {"target_size": [64, 64],
                                                        "keep_ratio": False}}, {"NormalizeImage": {}},
                                                       {"Permute": {}}]})
    try:
        trainer = Trainer(cfg, seed=0)
        trainer.train()
        trainer.evaluate()  # as tools/eval.py: the model's size on an evaluation image
    finally:
        logging.getLogger("ppdet_lite").removeHandler(capture)
    params = [line for line in capture.lines if line.startswith("Model Params")]
    flops = [line for line in capture.lines if line.startswith("Model FLOPs")]
    assert params == [f"Model Params: {count_params(trainer.model) / 1e6:.6f} M (trainable)"] * 2
    assert len(flops) == 2 and "image shape [1, 3, 96, 96]" in flops[0] and "[1, 3, 64, 64]" in flops[1]
    # FLOPs grow with the pixels: about 96x96 / 64x64 = 2.25 (less: the smallest maps round up)
    assert 2.0 < float(flops[0].split()[2]) / float(flops[1].split()[2]) <= 2.25


def test_find_unused_parameters_reaches_data_parallel(tmp_path, monkeypatch):
    seen = {}

    class FakeDataParallel:
        def __init__(self, layers, find_unused_parameters=False):
            seen.update(layers=layers, find_unused_parameters=find_unused_parameters)

    trainer = Trainer(tiny_cfg(tmp_path, find_unused_parameters=True), seed=0)
    monkeypatch.setattr(paddle, "DataParallel", FakeDataParallel)
    trainer.nranks = 2  # as in a 2-process run; the wrapping is all this test looks at
    trainer._parallelize()
    assert seen == {"layers": trainer.model, "find_unused_parameters": True}


@pytest.mark.parametrize("key,value", [("master_grad", True), ("amp_level", "O2")])
def test_unimplemented_trainer_settings_are_refused(tmp_path, key, value):
    with pytest.raises(ConfigError, match=f"^<overrides>: {key}: {value!r}: ppdet_lite does not implement"):
        Trainer(tiny_cfg(tmp_path, **{key: value}), seed=0)
    check_trainer_keys(tiny_cfg(tmp_path, master_grad=False, amp_level="O1"))  # the no-op values load


def test_train_wrapper_runs_the_step_and_the_model_is_what_is_saved(tmp_path):
    class Doubled(paddle.nn.Layer):  # a wrapper that changes the loss (as distillation adds one)
        def __init__(self, model):
            super().__init__()
            self.inner = model

        def forward(self, inputs):
            losses = dict(self.inner(inputs))
            if self.training:
                losses["extra"] = losses["loss"] * 0 + 1.0
                losses["loss"] = losses["loss"] + losses["extra"]
            return losses

    rec = Recorder()
    trainer = Trainer(tiny_cfg(tmp_path, epoch=1, max_iters=1), seed=0, train_wrapper=Doubled, hooks=[rec])
    assert isinstance(trainer.train_model, Doubled) and trainer.train_model.inner is trainer.model
    trainer.train()
    assert float(trainer.losses["extra"]) == 1.0
    saved = paddle.load(os.path.join(trainer.save_dir, "model_final.pdparams"))
    assert set(saved) == set(ppdet_lite.build_model(trainer.cfg).state_dict())


def test_bn_recalibration_averages_the_batch_statistics_of_the_current_weights(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epoch=1, bn_recalibrate_batches=2), seed=0)
    assert any(isinstance(h, BNRecalibrationHook) and h.num_batches == 2 for h in trainer.hooks)
    batches = iter(trainer.loader)
    batches = [next(batches), next(batches)]
    model, first = trainer.model, trainer.model.backbone.conv1
    with paddle.no_grad():
        means = [first.conv(paddle.to_tensor(b["image"])).mean(axis=[0, 2, 3]).numpy() for b in batches]
    momentum = first.bn._momentum
    recalibrate_bn(model, batches + batches, 2)  # only the first 2 batches count
    np.testing.assert_allclose(first.bn._mean.numpy(), (means[0] + means[1]) / 2, rtol=1e-4, atol=1e-6)
    assert first.bn._momentum == momentum  # restored


def test_freeze_bn_epoch_trains_on_the_running_statistics_from_that_epoch(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path, epoch=2, freeze_bn_epoch=1, use_ema=False), seed=0)
    assert any(isinstance(h, FreezeBNHook) and h.start == 1 for h in trainer.hooks)
    bn, conv = trainer.model.backbone.conv1.bn, trainer.model.backbone.conv1.conv
    seen = []

    class Watch(HookBase):
        def before_step(self):
            if self.trainer.iter == 0:
                seen.append((self.trainer.epoch, bn.training, bn._mean.numpy().copy(), conv.weight.numpy().copy()))

    trainer.register_hooks([Watch()])
    trainer.train()
    (e0, training0, mean0, w0), (e1, training1, mean1, w1) = seen
    assert (e0, training0) == (0, True) and (e1, training1) == (1, False)
    assert not np.allclose(mean0, mean1)  # epoch 0 updated the statistics ...
    np.testing.assert_array_equal(bn._mean.numpy(), mean1)  # ... epoch 1 used them, unchanged
    assert not np.allclose(conv.weight.numpy(), w1)  # and still trained the weights


def test_summary_hook_prints_the_run_and_draws_the_best_models_example(tmp_path, capsys):
    cfg = tiny_cfg(tmp_path, epoch=1, **{"YOLOv3Head.obj_bias_init": 0.0, "YOLOv3Head.cls_bias_init": 0.0})
    trainer = Trainer(cfg, seed=0, hooks=[SummaryHook()])
    metrics = trainer.train(validate=True)
    out = capsys.readouterr().out
    example = os.path.join(trainer.save_dir, "example_prediction.jpg")
    assert f"last epoch: bbox mAP@[.5:.95] {metrics['AP']:.4f}" in out
    assert "best_model (epoch 0)" in out and f"example prediction: {example}" in out
    drawn = cv2.imread(example)
    assert drawn is not None and min(drawn.shape[:2]) >= 384  # the 96 px image, zoomed for its labels


class _SlowBetweenEpochs(HookBase):
    def after_epoch(self):
        time.sleep(1.0)  # what a long evaluation or checkpoint costs


def test_progress_lines_eval_progress_and_an_eta_that_counts_time_between_epochs(tmp_path):
    capture = _Capture()
    logging.getLogger("ppdet_lite").addHandler(capture)
    try:
        trainer = Trainer(tiny_cfg(tmp_path, epoch=3, **{"EvalReader.batch_size": 2}), seed=0,
                          hooks=[_SlowBetweenEpochs()])
        trainer.train(validate=True)
    finally:
        logging.getLogger("ppdet_lite").removeHandler(capture)
    evals = [line for line in capture.lines if line.startswith("Eval [")]
    assert len(evals) == 3 * 3 and all("images/s eta: " in line for line in evals)  # 3 lines per eval
    assert [l.split("]")[0] for l in evals[:3]] == ["Eval [1/4", "Eval [2/4", "Eval [3/4"]
    etas = {}
    for line in capture.lines:
        if line.startswith("Epoch [1/3] [  0/2]"):
            h, m, s = map(int, line.rsplit("eta: ", 1)[1].split(":"))
            etas[1] = 3600 * h + 60 * m + s
    assert etas[1] >= 2  # two epochs left, each followed by >= 1 s of work outside the steps

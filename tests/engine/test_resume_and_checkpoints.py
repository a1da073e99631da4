"""Resume equals an uninterrupted run; a kill during a checkpoint write leaves the last one whole."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import paddle
import pytest

from ppdet_lite.engine.checkpoint import load_weights, save_checkpoint
from ppdet_lite.engine.trainer import Trainer

from .helpers import tiny_cfg


def _weights(trainer):
    return {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}


def test_resume_matches_straight_run(tmp_path):
    # 2 epochs of 2 iterations straight, versus 1 epoch, a new process-like Trainer, resume, 1 more
    straight = Trainer(tiny_cfg(tmp_path / "a", epoch=2), seed=7)
    straight.train()
    first = Trainer(tiny_cfg(tmp_path / "b", epoch=1), seed=7)
    first.train()
    ckpt = os.path.join(first.save_dir, "model_final")
    resumed = Trainer(tiny_cfg(tmp_path / "b", epoch=2), seed=7)
    resumed.resume(ckpt)
    assert resumed.start_epoch == 1 and resumed.ema.step == first.ema.step
    resumed.train()
    a, b = _weights(straight), _weights(resumed)
    diff = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    print(f"max abs weight diff after resume: {diff:.3g}")
    assert diff < 1e-5
    ema_a, ema_b = straight.ema.apply(), resumed.ema.apply()
    assert max(float((ema_a[k] - ema_b[k]).abs().max()) for k in ema_a) < 1e-5
    assert abs(straight.lr.get_lr() - resumed.lr.get_lr()) < 1e-12


KILLED_SAVE = """
import os, signal, sys
import ppdet_lite  # the installed package (zlib before paddle)
import numpy as np
from ppdet_lite.engine import checkpoint

save_dir, epoch, renames = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
real, done = os.replace, [0]
def replace(src, dst):
    if done[0] == renames:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 at this rename boundary
    real(src, dst)
    done[0] += 1
os.replace = replace
w = {"w": np.full([64, 64], epoch, np.float32)}
checkpoint.save_checkpoint(save_dir, "model_final", w, {"w": w["w"] + 0.5}, {"last_epoch": epoch, "m": w["w"] * 2})
"""


def saved_epoch(state):
    """The epoch each file of a loaded checkpoint comes from (they must agree)."""
    return {float(state["weights"]["w"][0, 0]), float(state["raw_weights"]["w"][0, 0]) - 0.5,
            float(state["optimizer"]["m"][0, 0]) / 2, float(state["optimizer"]["last_epoch"])}


@pytest.mark.parametrize("renames", [0, 1, pytest.param(2, marks=pytest.mark.slow), 3,
                                     pytest.param(4, marks=pytest.mark.slow)])
def test_a_kill_at_any_rename_leaves_one_consistent_checkpoint_or_a_refusal(tmp_path, renames):
    from ppdet_lite.core.errors import ConfigError
    from ppdet_lite.engine.checkpoint import load_checkpoint, read_state, resolve, verify_checkpoint

    save_dir = str(tmp_path / "run")
    for epoch, kill_at in ((3, 99), (5, renames)):  # epoch 3 saved whole; epoch 5's save is killed
        proc = subprocess.run([sys.executable, "-c", KILLED_SAVE, save_dir, str(epoch), str(kill_at)])
        assert proc.returncode == (-signal.SIGKILL if kill_at < 4 else 0)  # a save is 4 renames (3 files + manifest)
    prefix = os.path.join(save_dir, "model_final")
    try:
        state = load_checkpoint(prefix)
    except ConfigError as e:
        assert renames in (1, 2) and "do not all come from one save" in str(e)
    else:  # before any rename: the old set; after the three file renames: the new one
        assert saved_epoch(state) == ({3.0} if renames == 0 else {5.0})
    # eval / export read .pdparams alone: it is always one whole file of one save
    try:
        verify_checkpoint(prefix)
        assert float(read_state(resolve(prefix))["w"][0, 0]) in (3.0, 5.0)
    except ConfigError:
        assert renames in (1, 2)  # the old manifest no longer vouches for what is on disk
    # the next save of that name removes the killed save's temporary files and commits a clean set
    subprocess.run([sys.executable, "-c", KILLED_SAVE, save_dir, "6", "99"], check=True)
    assert not [f for f in os.listdir(save_dir) if ".tmp-" in f]
    assert saved_epoch(load_checkpoint(prefix)) == {6.0}


def test_resume_refuses_another_models_checkpoint_and_a_finished_run(tmp_path):
    from ppdet_lite.core.errors import ConfigError

    first = Trainer(tiny_cfg(tmp_path / "a", epoch=1), seed=7)
    first.train()
    ckpt = os.path.join(first.save_dir, "model_final")
    other = Trainer(tiny_cfg(tmp_path / "b", epoch=2, num_classes=9), seed=7)
    with pytest.raises(ConfigError, match="not a checkpoint of this model"):
        other.resume(ckpt)
    done = Trainer(tiny_cfg(tmp_path / "a", epoch=1), seed=7)
    with pytest.raises(ConfigError, match="finished epoch 1 and the config trains 1 epochs"):
        done.resume(ckpt)


def test_load_weights_reports_mismatches_and_finetune_head(tmp_path):
    import ppdet_lite

    cfg4 = tiny_cfg(tmp_path)
    model4 = ppdet_lite.build_model(cfg4)
    prefix = save_checkpoint(str(tmp_path / "w"), "m4", model4.state_dict())
    # another num_classes: everything but the head output convs loads, and the report says so
    model9 = ppdet_lite.build_model(tiny_cfg(tmp_path, num_classes=9))
    report = load_weights(model9, prefix)
    assert len(report["head_skipped"]) == 6 and not report["mismatched"]
    key = "backbone.conv1.conv.weight"
    np.testing.assert_array_equal(model9.state_dict()[key].numpy(), model4.state_dict()[key].numpy())
    # a truly different model: every mismatch is named
    state = model4.state_dict()
    state["neck.extra.weight"] = paddle.zeros([1])
    state.pop(key)
    paddle.save(state, str(tmp_path / "bad.pdparams"))
    with pytest.raises(ppdet_lite.ConfigError) as e:
        load_weights(ppdet_lite.build_model(cfg4), str(tmp_path / "bad.pdparams"))
    assert key in str(e.value) and "neck.extra.weight" in str(e.value)
    with pytest.raises(ppdet_lite.ConfigError, match="not found"):
        load_weights(model4, str(tmp_path / "missing"))

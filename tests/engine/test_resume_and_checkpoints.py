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

from ppdet_lite.engine.checkpoint import atomic_save, load_weights, save_checkpoint
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


def test_atomic_save_survives_a_kill_mid_write(tmp_path):
    path = str(tmp_path / "model.pdparams")
    good = {"w": paddle.ones([4, 4])}
    atomic_save(good, path)
    # a child process starts writing a large checkpoint to the same path and is killed mid-write
    script = textwrap.dedent(f"""
        import ppdet_lite  # the installed package (zlib before paddle)
        import paddle
        from ppdet_lite.engine.checkpoint import atomic_save
        big = {{f"w{{i}}": paddle.randn([512, 1024]) for i in range(150)}}
        print("writing", flush=True)
        atomic_save(big, {path!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.time() + 30
    while time.time() < deadline and not any(".tmp-" in f for f in os.listdir(tmp_path)):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    loaded = paddle.load(path)
    assert list(loaded) == ["w"] and float(loaded["w"].sum()) == 16.0


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

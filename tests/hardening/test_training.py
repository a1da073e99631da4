"""Training that cannot start or cannot go on: epoch=0, resume past the end, a save_dir that cannot be
written (refused before training), a non-finite loss, a full disk on save. Each ends in one ``error:``
line with exit 2, never names a weights file it did not write, and keeps what earlier runs wrote."""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from .conftest import write_yaml
from .helpers import ROOT, Result, fingerprint, kept, problems, refused, run_tool


def _copy_run(finished_run, tmp_path):
    """A copy of the finished run: (config path, its save_dir) with model_final and its manifest."""
    out = tmp_path / "output"
    shutil.copytree(os.path.dirname(finished_run.save_dir), out)
    cfg = write_yaml(str(tmp_path / "run.yml"), {"_BASE_": [finished_run.cfg], "save_dir": str(out)})
    return cfg, str(out / "run")


def test_epoch_0(ws, tmp_path):
    res = run_tool("train", ["-c", ws.cfg, "-o", "epoch=0", f"save_dir={tmp_path}"])
    refused(res, "epoch", "0")
    assert "weights:" not in res.out and not os.listdir(tmp_path)


@pytest.mark.parametrize("epoch", [1, pytest.param(0, marks=pytest.mark.slow)])
def test_resume_past_the_end(epoch, finished_run, tmp_path):
    cfg, save_dir = _copy_run(finished_run, tmp_path)
    before = fingerprint(save_dir)
    res = run_tool("train", ["-c", cfg, "-r", os.path.join(save_dir, "model_final"), "-o", f"epoch={epoch}"])
    refused(res, "epoch")
    assert "weights:" not in res.out, "[silent] names a weights file it did not write"
    kept(before, fingerprint(save_dir))


@pytest.mark.slow
def test_resume_without_optimizer_state(finished_run, tmp_path):
    cfg, save_dir = _copy_run(finished_run, tmp_path)
    os.remove(os.path.join(save_dir, "model_final.pdopt"))
    refused(run_tool("train", ["-c", cfg, "-r", os.path.join(save_dir, "model_final"), "-o", "epoch=2"]),
            "model_final.pdopt")


@pytest.mark.slow
def test_resume_mixed_set_is_refused(finished_run, tmp_path):
    cfg, save_dir = _copy_run(finished_run, tmp_path)
    with open(os.path.join(save_dir, "model_final.pdopt"), "ab") as f:
        f.write(b"\0")  # no longer the file the manifest names
    refused(run_tool("train", ["-c", cfg, "-r", os.path.join(save_dir, "model_final"), "-o", "epoch=2"]),
            "model_final", "one save")


def _unwritable(kind, tmp_path):
    if kind == "under_a_file":
        (tmp_path / "file").write_text("x")
        return str(tmp_path / "file" / "out")
    if kind == "is_a_file":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "tiny").write_text("x")  # save_dir/<config name> is a file
        return str(tmp_path / "out")
    if kind == "proc":
        return "/proc/ppdet_lite_hardening"
    if kind == "dev_full":
        return "/dev/full"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["under_a_file"] + [pytest.param(k, marks=pytest.mark.slow)
                                                     for k in ("is_a_file", "proc", "dev_full")])
def test_unwritable_save_dir_is_refused_before_training(kind, ws, tmp_path):
    save_dir = _unwritable(kind, tmp_path)
    res = run_tool("train", ["-c", ws.cfg, "-o", f"save_dir={save_dir}"])
    refused(res, "save_dir", save_dir)
    assert "Epoch [" not in res.out, "[silent] trained before checking save_dir"


def _nan_weights(ws, tmp_path):
    import paddle

    state = paddle.load(ws.weights)
    for k, v in state.items():
        if k.startswith("yolo_head.yolo_output") and k.endswith("bias"):
            state[k] = np.full(v.shape, np.nan, "float32")
    path = str(tmp_path / "nan.pdparams")
    paddle.save(state, path)
    return path


def test_nan_stop_is_one_line(finished_run, ws, tmp_path):
    cfg, save_dir = _copy_run(finished_run, tmp_path)
    before = fingerprint(save_dir)
    res = run_tool("train", ["-c", cfg, "-o", f"pretrain_weights={_nan_weights(ws, tmp_path)}", "epoch=2"])
    line = refused(res, "not finite", "model_final", strict_stderr=False)
    assert "Last good checkpoint" in line and "weights:" not in res.out
    kept(before, fingerprint(save_dir))


def test_file_size_limit_on_save_keeps_the_last_checkpoint(finished_run, tmp_path):
    """In-process stand-in for a full disk: RLIMIT_FSIZE makes every write past 64 KiB fail (EFBIG)
    while the new model_final is written over the previous run's."""
    cfg, save_dir = _copy_run(finished_run, tmp_path)
    before = fingerprint(save_dir)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, old[1]))
    try:
        res = run_tool("train", ["-c", cfg, "-o", "epoch=1"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)
    refused(res, "model_final", "unchanged", strict_stderr=False)
    kept(before, fingerprint(save_dir))
    assert not [f for f in os.listdir(save_dir) if "tmp-" in f], "temporary files left behind"
    from ppdet_lite.engine.checkpoint import load_checkpoint

    load_checkpoint(os.path.join(save_dir, "model_final"))  # still one consistent, loadable set


FULL_DISK = r"""
import json, os, shutil, subprocess, sys
src, mnt, cfg = sys.argv[1:4]
out = os.path.join(mnt, "output")
shutil.copytree(src, out)  # the previous run's checkpoint fills most of the small tmpfs
proc = subprocess.run([sys.executable, "tools/train.py", "-c", cfg, "-o", f"save_dir={out}", "epoch=1"],
                      capture_output=True, text=True)
import ppdet_lite
from ppdet_lite.engine.checkpoint import load_checkpoint
try:
    load_checkpoint(os.path.join(out, "run", "model_final"))
    intact = "yes"
except Exception as e:
    intact = str(e)
print(json.dumps({"rc": proc.returncode, "stderr": proc.stderr, "stdout": proc.stdout[-2000:], "intact": intact,
                  "files": sorted(os.listdir(os.path.join(out, "run")))}))
"""


@pytest.mark.slow
def test_full_disk_on_save_keeps_the_last_checkpoint(finished_run, tmp_path):
    """A real ENOSPC: the run's save_dir on a tmpfs (mounted in a user + mount namespace) that holds
    the previous run's checkpoint and not one more."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode:
        pytest.skip("no user namespaces here: cannot mount a small tmpfs")
    src = os.path.dirname(finished_run.save_dir)
    used = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(src) for f in fs)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "full_disk.py").write_text(FULL_DISK)
    script = (f"mount -t tmpfs -o size={int(used * 1.4) // 1024}k tmpfs {mnt} && "
              f"{sys.executable} {tmp_path / 'full_disk.py'} {src} {mnt} {finished_run.cfg}")
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    tags = problems(Result(out["rc"], out["stdout"], out["stderr"]), ["No space left", "model_final"],
                    strict_stderr=False)
    assert not tags, f"[{' '.join(tags)}] exit={out['rc']}\n{out['stderr'][-3000:]}"
    assert out["intact"] == "yes", out["intact"]
    assert not [f for f in out["files"] if "tmp-" in f], out["files"]

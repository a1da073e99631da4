"""The scripts themselves, as users run them: bad input ends the process with exit code 2 and stderr
of exactly one ``error:`` line, no traceback, no crash signal (the in-process corpus covers the
cases; this proves the process-level behaviour once per script)."""
import os
import subprocess
import sys

import pytest

from .helpers import ROOT, Result, problems


def script(path, *args, cwd=None):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, path), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or ROOT, timeout=300, env=env)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def check(res, *names):
    tags = problems(res, names)
    assert not tags, f"[{' '.join(tags)}] exit={res.code}\n{res.err[-3000:]}"


# (script, arguments of the workspace ws / tmp dir, words of the error line)
CASES = {
    "train": ("tools/train.py", lambda ws, tmp: ["-c", ws.cfg, "-o", "epoch=ten"], ["epoch", "'ten'"]),
    "eval": ("tools/eval.py", lambda ws, tmp: ["-c", ws.cfg, "-o", f"weights={tmp / 'no.pdparams'}"], ["no.pdparams"]),
    "infer": ("tools/infer.py", lambda ws, tmp: ["-c", ws.cfg, "--infer_img", ws.image, "--draw_threshold", "nan"],
              ["--draw_threshold", "nan"]),
    "export": ("tools/export_model.py", lambda ws, tmp: ["-c", ws.cfg, "-o", "TrainReader.batch_size=-1"],
               ["TrainReader.batch_size", "-1"]),
    "anchor_cluster": ("tools/anchor_cluster.py", lambda ws, tmp: ["-c", ws.cfg, "-n", "0"], ["-n", "0"]),
    "prune_distill": ("slim/prune_distill.py", lambda ws, tmp: ["-c", ws.cfg, "--target", "2"], ["--target", "2"]),
    "quant": ("slim/quant.py", lambda ws, tmp: ["-c", ws.cfg, "--slim_config", tmp / "no_slim.yml"], ["no_slim.yml"]),
    "post_quant": ("slim/post_quant.py", lambda ws, tmp: ["-c", ws.cfg, "--slim_config", ws.slim_ptq,
                                                          "--calib", tmp / "nodir"], ["--calib", "nodir"]),
    "deploy_infer": ("deploy/python/infer.py", lambda ws, tmp: ["--model_dir", tmp / "nomodel", "--image_file",
                                                                ws.image], ["--model_dir", "nomodel"]),
    "server": ("deploy/serving/server.py", lambda ws, tmp: ["--model_dir", tmp / "nomodel"], ["nomodel"]),
}
FAST = ("train",)


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in CASES])
def test_script_refuses_bad_input(name, ws, tmp_path):
    path, args, words = CASES[name]
    check(script(path, *args(ws, tmp_path), cwd=str(tmp_path)), *words)


@pytest.mark.slow
def test_nan_stop_process(ws, tmp_path):
    """A training process that stops on a non-finite loss: exit 2, the error the last stderr line."""
    import numpy as np
    import paddle

    state = paddle.load(ws.weights)
    for k, v in state.items():
        if k.startswith("yolo_head.yolo_output") and k.endswith("bias"):
            state[k] = np.full(v.shape, np.nan, "float32")
    paddle.save(state, str(tmp_path / "nan.pdparams"))
    res = script("tools/train.py", "-c", ws.cfg, "-o", f"pretrain_weights={tmp_path / 'nan.pdparams'}",
                 f"save_dir={tmp_path / 'out'}", cwd=str(tmp_path))
    tags = problems(res, ["not finite"], strict_stderr=False)
    assert not tags and res.err.strip().splitlines()[-1].startswith("error:"), f"[{' '.join(tags)}] {res.err[-3000:]}"

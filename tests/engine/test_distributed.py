"""Two-process CPU data-parallel training through paddle.distributed.launch (gloo)."""
import glob
import os
import subprocess
import sys
import textwrap

import numpy as np
import paddle
import pytest

from .helpers import ROOT

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import pathlib
    import ppdet_lite
    import paddle
    from ppdet_lite.engine.trainer import Trainer
    from ppdet_lite.slim.distill import DistillYOLOv3Loss, distill_wrapper
    from tests.engine.helpers import tiny_cfg
    tmp = pathlib.Path({tmp!r})
    cfg = tiny_cfg(tmp, epoch=1)
    wrapper = None
    if {distill}:  # the same frozen teacher on both ranks around the student
        paddle.seed(11)
        wrapper = distill_wrapper(ppdet_lite.build_model(cfg), DistillYOLOv3Loss(weight=100))
    trainer = Trainer(cfg, seed=3, train_wrapper=wrapper)
    assert trainer.nranks == 2, trainer.nranks
    trainer.train()
    assert isinstance(trainer.train_model, paddle.DataParallel)
    rank = paddle.distributed.get_rank()
    # trainable parameters only: BN running statistics are per-rank buffers (DataParallel syncs grads)
    params = {{n: p for n, p in trainer.model.named_parameters() if not p.stop_gradient}}
    paddle.save(params, str(tmp / f"rank{{rank}}.pdparams"))
""")


@pytest.mark.parametrize("distill", [False, True], ids=["plain", "distill"])
def test_two_process_cpu_training_keeps_ranks_identical(tmp_path, distill):
    """Plain, and with a distillation wrapper around the student (wrapped for data parallel once)."""
    script = tmp_path / "dp_train.py"
    script.write_text(SCRIPT.format(tmp=str(tmp_path), distill=distill))
    # build the dataset once so the two ranks do not race to generate it
    from ppdet_lite.data.builder import build_dataset

    from .helpers import tiny_cfg
    build_dataset(tiny_cfg(tmp_path), "TrainDataset").check_or_download_dataset()
    # the script imports the installed ppdet_lite and this repository's tests package
    env = dict(os.environ, FLAGS_paddle_num_threads="1",
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                           "--log_dir", str(tmp_path / "log"), str(script)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=600)
    logs = {os.path.basename(p): open(p).read() for p in glob.glob(str(tmp_path / "log" / "*"))}
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + str(logs)[-4000:]
    w0 = paddle.load(str(tmp_path / "rank0.pdparams"))
    w1 = paddle.load(str(tmp_path / "rank1.pdparams"))
    assert len(w0) > 100 and w0.keys() == w1.keys()
    diff = max(float(np.abs(w0[k].numpy() - w1[k].numpy()).max()) for k in w0)
    assert diff < 1e-6, diff
    # only rank 0 wrote checkpoints and logged
    saved = sorted(os.listdir(tmp_path / "output" / "ppyolo_tiny_shapes"))
    assert saved == ["model_final.ckpt.json", "model_final.pdema", "model_final.pdopt", "model_final.pdparams"], saved
    rank_logs = {name: text for name, text in logs.items() if name.startswith("workerlog")}
    assert "saved checkpoint" in rank_logs["workerlog.0"]
    assert ("distill_loss" in rank_logs["workerlog.0"]) == distill
    assert "saved checkpoint" not in rank_logs["workerlog.1"] and "Epoch [" not in rank_logs["workerlog.1"]

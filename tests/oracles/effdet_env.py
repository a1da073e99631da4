"""The effdet 0.4.1 side environment: a venv (default ~/.cache/ppdet_lite/effdet-venv, or
$PPDET_EFFDET_VENV) built once from requirements-effdet.txt, and a runner for effdet_oracle.py.

    python -m tests.oracles.effdet_env            # build (about 1.5 min here, 5.5 GB) and check

Tests call ``oracle_python()``: the venv's python, building it on first use unless
PPDET_EFFDET_BUILD=0; the caller skips with the returned reason when it cannot be had.
"""
import hashlib
import os
import shutil
import subprocess
import sys
from typing import Optional, Tuple

from ppdet_lite.utils.filelock import file_lock

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = os.path.join(HERE, "requirements-effdet.txt")
ORACLE = os.path.join(HERE, "effdet_oracle.py")
VENV = os.environ.get("PPDET_EFFDET_VENV",
                      os.path.join(os.path.expanduser("~"), ".cache", "ppdet_lite", "effdet-venv"))
MARKER = ".ppdet_lite_ready"


def _digest() -> str:
    with open(REQUIREMENTS, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def _python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def _ready(venv: str) -> bool:
    marker = os.path.join(venv, MARKER)
    if not (os.path.exists(_python(venv)) and os.path.exists(marker)):
        return False
    with open(marker) as f:
        return f.read().strip() == _digest()


def _base_python() -> str:
    return getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable


def build(venv: str = VENV, timeout: int = 1800) -> Tuple[bool, str]:
    """Create the venv and pip-install the pinned oracle packages; (ok, log tail)."""
    tmp = venv + ".building"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(venv), exist_ok=True)
    steps = [[_base_python(), "-m", "venv", tmp],
             [_python(tmp), "-m", "pip", "install", "-q", "-r", REQUIREMENTS]]
    for cmd in steps:
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, f"{' '.join(cmd[:4])}: {e}"
        if run.returncode != 0:
            return False, (run.stdout + run.stderr)[-2000:]
    check = subprocess.run([_python(tmp), "-c", "import effdet, timm, torch, torchvision"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        return False, check.stderr[-2000:]
    with open(os.path.join(tmp, MARKER), "w") as f:
        f.write(_digest())
    shutil.rmtree(venv, ignore_errors=True)
    os.rename(tmp, venv)  # bin/python is a symlink to the base python: the move is safe
    return True, ""


def oracle_python() -> Tuple[Optional[str], str]:
    """(path of the side venv's python, "") or (None, why it is not available)."""
    if _ready(VENV):
        return _python(VENV), ""
    if os.environ.get("PPDET_EFFDET_BUILD", "1") == "0":
        return None, f"effdet side venv {VENV} not built (PPDET_EFFDET_BUILD=0)"
    with file_lock(VENV.rstrip(os.sep) + ".lock"):  # one pytest worker builds it, others wait
        ok, log = (True, "") if _ready(VENV) else build(VENV)
    if not ok:
        return None, f"cannot build the effdet side venv {VENV}: {log.strip().splitlines()[-1:]}"
    return _python(VENV), ""


def run_oracle(python: str, out_dir: str, model: str, size: int, batch: int = 2, seed: int = 0,
               float64: bool = False, timeout: int = 900) -> None:
    """Run effdet_oracle.py in the side venv; RuntimeError with its output on failure."""
    cmd = [python, ORACLE, "--model", model, "--size", str(size), "--batch", str(batch),
           "--seed", str(seed), "--out", out_dir] + (["--float64"] if float64 else [])
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    env.pop("PYTHONPATH", None)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if run.returncode != 0:
        raise RuntimeError(f"effdet oracle failed ({' '.join(cmd)}):\n{run.stderr[-3000:]}")


if __name__ == "__main__":
    py, why = oracle_python()
    print(py or why)
    sys.exit(0 if py else 1)

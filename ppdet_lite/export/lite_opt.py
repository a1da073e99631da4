"""Where ``paddle_lite_opt`` and the Lite Python runtime come from: PATH, else a Python 3.10 venv.

paddlelite wheels stop at CPython 3.10, so the converter (``paddle_lite_opt``) and the Lite
runner (``ppdet_lite.runtime.lite``, run with that venv's python) live in a venv of their own,
kept at ``~/.cache/ppdet_lite/lite-venv`` and created on first use from pyenv's 3.10.13 or any
``python3.10``: ``pip install paddlelite==2.13rc0 numpy opencv-python-headless PyYAML``, and this
package's source tree installed there without dependencies (the runner needs no paddle).
"""
import os
import shutil
import subprocess
from typing import List, Optional

from ..utils.filelock import file_lock

__all__ = ["LITE_VENV", "LITE_PACKAGES", "LiteUnavailable", "find_python310", "lite_venv",
           "find_opt"]

LITE_VENV = os.path.join(os.path.expanduser("~"), ".cache", "ppdet_lite", "lite-venv")
LITE_PACKAGES = ["paddlelite==2.13rc0", "numpy==1.26.4", "opencv-python-headless==4.6.0.66",
                 "PyYAML"]
# the source tree holding this package (pyproject.toml beside ppdet_lite/), for the venv install
SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class LiteUnavailable(RuntimeError):
    """No paddle_lite_opt and no way to make the Python 3.10 venv that provides it."""


def find_python310() -> Optional[str]:
    """pyenv's 3.10.13 interpreter (the pyenv shim fails on this image), else PATH's python3.10."""
    candidates = []
    try:
        prefix = subprocess.run(["pyenv", "prefix", "3.10.13"], capture_output=True, text=True,
                                timeout=30).stdout.strip()
        if prefix:
            candidates.append(os.path.join(prefix, "bin", "python3.10"))
    except (OSError, subprocess.TimeoutExpired):
        pass
    if shutil.which("python3.10"):
        candidates.append(shutil.which("python3.10"))
    for exe in candidates:
        try:
            ok = subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 10)"],
                                capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return exe
    return None


def _pip(python: str, args: List[str], venv: str) -> None:
    pip = subprocess.run([python, "-m", "pip", "install", "-q", *args], capture_output=True,
                         text=True)
    if pip.returncode != 0:
        raise LiteUnavailable(f"`pip install {' '.join(args)}` failed in {venv}:\n"
                              f"{pip.stderr[-2000:]}\nCheck the network/PyPI access and retry.")


def lite_venv(venv: str = LITE_VENV) -> str:
    """Path of a venv with paddlelite, numpy, cv2, yaml and ``ppdet_lite.runtime``; created
    (or completed) once, then reused."""
    python = os.path.join(venv, "bin", "python")
    probe = "import paddlelite.lite, numpy, cv2, yaml, ppdet_lite.runtime"

    def ready() -> bool:
        return os.path.isfile(python) and subprocess.run(
            [python, "-c", probe], capture_output=True, cwd=os.path.expanduser("~")).returncode == 0

    if ready():
        return venv
    with file_lock(venv.rstrip(os.sep) + ".lock"):  # one process builds it, the others wait
        if not ready():
            _build_lite_venv(venv, python)
    return venv


def _build_lite_venv(venv: str, python: str) -> None:
    if not os.path.isfile(python):
        py310 = find_python310()
        if py310 is None:
            raise LiteUnavailable(
                "Paddle Lite needs Python 3.10 (paddlelite wheels exist only up to cp310) and none "
                "was found: `pyenv prefix 3.10.13` failed and no working python3.10 is on PATH. "
                "Install one (e.g. `pyenv install 3.10.13`), or put a paddle_lite_opt from "
                f"`pip install {LITE_PACKAGES[0]}` (in a 3.10 env) on PATH.")
        print(f"creating the Paddle Lite venv {venv} with {py310} ...", flush=True)
        subprocess.run([py310, "-m", "venv", "--clear", venv], check=True)
    _pip(python, LITE_PACKAGES, venv)
    if not os.path.isfile(os.path.join(SOURCE_TREE, "pyproject.toml")):
        raise LiteUnavailable(f"{venv} needs ppdet_lite (its paddle-free runtime) and there is no "
                              f"source tree at {SOURCE_TREE} to install: run `pip install "
                              f"--no-deps <ppdet_lite checkout>` with {python}")
    _pip(python, ["--no-deps", "-e", SOURCE_TREE], venv)


def find_opt(venv: str = LITE_VENV) -> List[str]:
    """Command for ``paddle_lite_opt``: PATH first, else the cached/created 3.10 venv."""
    if shutil.which("paddle_lite_opt"):
        return [shutil.which("paddle_lite_opt")]
    return [os.path.join(lite_venv(venv), "bin", "paddle_lite_opt")]

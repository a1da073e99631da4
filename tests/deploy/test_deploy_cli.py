"""deploy/python/infer.py: bad input is one ``error:`` line with exit 2, and an annotated image never
replaces an input image."""
import os
import shutil
import subprocess

import cv2
import pytest

from .helpers import PYTHON, REPO


def deploy_infer(*args):
    return subprocess.run([PYTHON, "deploy/python/infer.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, message", [
    (["--model_dir", "/nonexistent/model"], "--model_dir /nonexistent/model: "),
    (["--model_dir", "x", "--batch_size", "-2"], "--batch_size -2: must be >= 1"),
    (["--model_dir", "x", "--threshold", "2"], "score threshold in [0, 1]"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    proc = deploy_infer(*args, "--image_file", os.path.join(REPO, "README.md"))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_an_input_in_the_output_dir_is_not_overwritten(ours_tiny, image_files, tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    shutil.copy(image_files[0], out / "img.png")
    before = (out / "img.png").read_bytes()
    proc = deploy_infer("--model_dir", ours_tiny.dir, "--image_file", str(out / "img.png"),
                        "--output_dir", str(out), "--threshold", "0.05")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "img.png").read_bytes() == before  # the input is untouched
    drawn = cv2.imread(str(out / "img_det.png"))
    assert drawn is not None and drawn.shape == cv2.imread(str(out / "img.png")).shape

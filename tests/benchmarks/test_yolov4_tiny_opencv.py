"""benchmarks/yolov4_tiny_opencv.py as a real process at 128 px, 2 rounds: both backends timed,
their outputs equal (one network), the JSON written; a bad flag is one error line, exit 2."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("cv2")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "yolov4_tiny_opencv.py")


def _run(*flags):
    return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True, timeout=300)


def test_times_both_backends_on_one_network(tmp_path):
    proc = _run("--size", "128", "--runs", "2", "--warmup", "1", "--gap_ms", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "yolov4_tiny_opencv.json") as f:
        report = json.load(f)
    backends = report["backends"]
    assert set(backends) == {"ours (Paddle Inference, oneDNN)", "OpenCV DNN"}
    for stats in backends.values():
        assert len(stats["times_ms"]) == 2 and 0 < stats["median_ms"] <= stats["p90_ms"]
        assert "no NMS" in stats["timed"]
    diff = report["output_diff"]
    assert report["same_network"] and diff["boxes_px"] <= 0.05 and diff["scores"] <= 1e-3
    assert diff["scores_kept"] > 0 and diff["ours_max_where_opencv_zeroed"] <= 0.2 + 1e-3
    ratio = backends["OpenCV DNN"]["median_ms"] / backends["ours (Paddle Inference, oneDNN)"]["median_ms"]
    assert report["opencv_over_ours"] == pytest.approx(ratio)
    assert "OpenCV / ours:" in proc.stdout and "the same network" in proc.stdout
    assert os.path.isfile(report["darknet_weights"]) and os.path.isdir(report["model_dir"])


@pytest.mark.parametrize("flags, message", [(["--size", "100"], "not a multiple of 32"),
                                            (["--runs", "0"], "must be >= 1")])
def test_bad_flag_is_one_error_line(flags, message, tmp_path):
    proc = _run(*flags, "--out", str(tmp_path))
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")


def test_unwritable_out_is_one_error_line(tmp_path):
    (tmp_path / "file").write_text("")
    proc = _run("--out", str(tmp_path / "file"))
    message = "--out " + str(tmp_path / "file") + ": cannot write there"
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")

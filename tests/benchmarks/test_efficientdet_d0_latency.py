"""benchmarks/efficientdet_d0_latency.py as a real process: at 128 px, one round, all three backends
timed on one network (ours, onnxruntime, effdet in the side venv's worker), the JSON written (slow:
~1 min, needs the effdet side venv); bad flags and a missing side-venv Python are one error line."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "efficientdet_d0_latency.py")
OURS, ORT, TORCH = "ours (Paddle Inference, oneDNN)", "onnxruntime", "effdet (PyTorch)"


def _run(*flags, timeout=600):
    return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_times_three_backends_on_one_network(tmp_path):
    pytest.importorskip("onnxruntime")
    from tests.oracles.effdet_env import oracle_python

    python, why = oracle_python()
    if python is None:
        pytest.skip(why)
    proc = _run("--size", "128", "--runs", "1", "--warmup", "1", "--gap_ms", "1", "--effdet_python", python,
                "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "efficientdet_d0_latency.json") as f:
        report = json.load(f)
    backends = report["backends"]
    assert set(backends) == {OURS, ORT, TORCH} and report["mkldnn"]
    for stats in backends.values():
        assert len(stats["times_ms"]) == 1 and 0 < stats["median_ms"] <= stats["p90_ms"]
        assert "no NMS" in stats["timed"]
    for name in (TORCH, ORT):
        diff = report["output_diff"][name]
        assert report["same_network"][name], diff
        for kind in ("cls", "box"):  # outputs O(10) (BN calibrated at 128 px), float32 rounding apart
            assert 1 < diff[kind + "_max_abs"] < 1e3 and diff[kind] < 1e-3 and diff[kind + "_rel"] <= 1e-5
    assert report["torch_over_ours"] == pytest.approx(backends[TORCH]["median_ms"] / backends[OURS]["median_ms"])
    assert report["ort_over_ours"] == pytest.approx(backends[ORT]["median_ms"] / backends[OURS]["median_ms"])
    assert "torch / ours:" in proc.stdout and "onnxruntime / ours:" in proc.stdout
    assert proc.stdout.count("the same network") == 2 and "fastest" in proc.stdout
    assert os.path.isfile(report["onnx"]) and os.path.isfile(report["effdet_weights"])


@pytest.mark.parametrize("flags, message", [(["--size", "100"], "not a multiple of 128"),
                                            (["--runs", "0"], "must be >= 1"),
                                            (["--effdet_python", "/nonexistent/python"], "not an executable")])
def test_bad_flag_is_one_error_line(flags, message, tmp_path):
    proc = _run(*flags, "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")

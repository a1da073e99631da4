"""benchmarks/slim_latency.py as a real process at 96 px, 2 rounds, Paddle Inference only (slow:
~1 min): FP32 / pruned / INT8 / INT8 with enable_mkldnn_int8 timed, the pruned FLOPs about
halved, INT8 candidates equal to FP32's, the profile and the program work written; a bad flag
is one error line, exit 2."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "slim_latency.py")
NAMES = {"FP32", "FP32 pruned", "INT8", "INT8 +enable_mkldnn_int8"}


def _run(*flags):
    return subprocess.run([sys.executable, SCRIPT, *flags], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_times_pruned_and_int8_in_paddle_inference(tmp_path):
    proc = _run("--size", "96", "--runs", "2", "--warmup", "1", "--gap_ms", "1", "--calib", "2",
                "--profile_runs", "1", "--no_lite", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "slim_latency.json") as f:
        report = json.load(f)
    pi = report["paddle_inference"]
    assert set(pi["stats"]) - {"ratios", "per_round_ratios"} == NAMES and "paddle_lite_x86" not in report
    for name in NAMES:
        s = pi["stats"][name]
        assert len(s["times_ms"]) == 2 and 0 < s["median_ms"] <= s["p90_ms"]
    ratios = pi["stats"]["ratios"]
    assert ratios["unpruned / pruned"] == pytest.approx(pi["stats"]["FP32"]["median_ms"]
                                                        / pi["stats"]["FP32 pruned"]["median_ms"])
    stats = report["model_stats"]
    assert 0.4 < 1 - stats["FP32 pruned"]["flops"] / stats["FP32"]["flops"] < 0.6
    assert stats["FP32 pruned"]["params"] < stats["FP32"]["params"]
    agree = pi["agreement"]["INT8 vs FP32"]  # a real int8 model of the same network
    assert agree["iou_mean"] > 0.95 and agree["same_class"] > 0.8, agree
    assert pi["profile_ms_per_run"]["INT8"].get("quantize_linear", 0) > 0
    assert pi["profile_ms_per_run"]["FP32"].get("fused_conv2d", 0) > 0
    work = report["program_work"]
    assert work["FP32"]["conv MACs 1x1"] > 1.8 * work["FP32 pruned"]["conv MACs 1x1"]
    assert work["INT8"]["quantize_linear ops"] > 0 and "quantize_linear ops" not in work["FP32"]
    assert "unpruned / pruned" in proc.stdout and "per-op profile" in proc.stdout


@pytest.mark.parametrize("flags, message", [(["--size", "100"], "not a multiple of 32"),
                                            (["--runs", "0"], "must be >= 1")])
def test_bad_flag_is_one_error_line(flags, message, tmp_path):
    proc = _run(*flags, "--out", str(tmp_path))
    assert proc.returncode == 2 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error:")

"""The tools stop at once with one clear message on bad configs and missing data."""
import os
import subprocess
import sys

from .helpers import ROOT


def run_tool(tool, *args, cwd):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", tool), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def test_missing_coco_names_path_and_key(tmp_path):
    proc = run_tool("train.py", "-c", os.path.join(ROOT, "configs", "ppyolov2_r50vd_dcn.yml"), "--eval",
                    cwd=str(tmp_path))
    assert proc.returncode == 2
    assert "dataset/coco" in proc.stderr and "TrainDataset.dataset_dir" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_misspelt_override_names_closest_key(tmp_path):
    proc = run_tool("train.py", "-c", os.path.join(ROOT, "configs", "ppyolo_tiny.yml"),
                    "-o", "YOLOv3Loss.ignore_thres=0.6", cwd=str(tmp_path))
    assert proc.returncode == 2 and "ignore_thres" in proc.stderr and "ignore_thresh" in proc.stderr

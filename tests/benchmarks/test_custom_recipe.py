"""benchmarks/custom_recipe.py's tree set and configs/ppyolo_tiny_custom.yml on it, as real
processes: the deepforest photos tiled into a COCO folder (every box inside its tile, tiles
covering each photo), the README's three steps on it (anchor clustering into an override file,
then training from that file for one epoch with evaluation)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "benchmarks", "custom_recipe.py")


def _run(cmd, timeout=600):
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("trees") / "trees")
    out = _run([sys.executable, SCRIPT, "--prepare_only", "--data_dir", data])
    if "could not fetch" in out:
        pytest.skip(out)
    return data


def test_tiles_are_a_coco_set_with_boxes_inside(trees):
    counts = {}
    for split, tiles in (("train", 72), ("val", 16)):
        with open(os.path.join(trees, "annotations", f"instances_{split}.json")) as f:
            coco = json.load(f)
        assert len(coco["images"]) == tiles and [c["name"] for c in coco["categories"]] == ["tree"]
        sizes = {im["id"]: (im["width"], im["height"]) for im in coco["images"]}
        assert set(sizes.values()) == {(320, 320)}
        assert all(os.path.isfile(os.path.join(trees, split, im["file_name"])) for im in coco["images"])
        boxes = np.array([a["bbox"] for a in coco["annotations"]])
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] > 0).all()
        assert (boxes[:, :2] + boxes[:, 2:] <= 320 + 1e-6).all()
        counts[split] = len(boxes)
    # val: one 1249x1035 photo with 279 trees in 4x4 overlapping tiles; trees near a tile edge
    # count in both tiles, those cut to under half in neither
    assert 279 <= counts["val"] <= 2 * 279 and counts["train"] > 574, counts


@pytest.mark.slow
def test_readme_steps_cluster_anchors_then_train(trees, tmp_path):
    data = [f"{part}.{key}={value}" for part, split in (("TrainDataset", "train"), ("EvalDataset", "val"))
            for key, value in (("dataset_dir", trees), ("image_dir", split),
                               ("anno_path", f"annotations/instances_{split}.json"))]
    anchors = str(tmp_path / "anchors.yml")
    out = _run([sys.executable, "tools/anchor_cluster.py", "-c", "configs/ppyolo_tiny_custom.yml",
                "-n", "9", "-s", "320", "--output", anchors, "-o", *data])
    assert "BPR 1.0000" in out, out
    with open(anchors) as f:
        override = yaml.safe_load(f)
    assert override["_BASE_"][0].endswith("ppyolo_tiny_custom.yml") and len(override["YOLOv3Head"]["anchors"]) == 9
    save = str(tmp_path / "run")
    out = _run([sys.executable, "tools/train.py", "-c", anchors, "--eval", "-o", *data, "epoch=1",
                f"save_dir={save}", "freeze_bn_epoch=1"])
    assert "bbox mAP@[.5:.95]" in out and "AP50" in out, out[-2000:]
    assert any("best_model.pdparams" in files for _, _, files in os.walk(save))

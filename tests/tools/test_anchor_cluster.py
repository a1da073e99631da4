"""Anchor clustering: planted clusters are recovered; the tool's YAML sets both anchor places."""
import os

import numpy as np
import pytest

import ppdet_lite
from ppdet_lite.data import anchor_cluster as ac
from ppdet_lite.tools import anchor_cluster as anchor_cluster_tool

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLANTED = np.array([[10, 14], [24, 36], [40, 22], [36, 80], [90, 90], [60, 160],
                    [200, 120], [128, 220], [260, 260]], float)


def _planted(rng, per=150, noise=0.06):
    """Shapes scattered (log-normal, ~6 %) around the planted anchors."""
    wh = np.repeat(PLANTED, per, axis=0) * np.exp(rng.normal(0, noise, (len(PLANTED) * per, 2)))
    return wh[rng.permutation(len(wh))]


def test_kmeans_recovers_planted_clusters():
    wh = _planted(np.random.default_rng(0))
    anchors = ac.cluster_anchors(wh, 9, "v2")
    np.testing.assert_allclose(anchors, ac.sort_by_area(PLANTED), rtol=0.04)
    stats = ac.anchor_stats(wh, anchors)
    assert stats["mean_iou"] > 0.85 and stats["bpr"] == 1.0


def test_genetic_step_never_lowers_fitness():
    rng = np.random.default_rng(1)
    wh = np.exp(rng.normal(3.5, 0.8, (600, 2)))  # no clear clusters: room to improve
    start = ac.kmeans_iou(wh, 6, seed=0)
    refined = ac.evolve(wh, start, iters=300, seed=0)
    assert ac.fitness(wh, refined) >= ac.fitness(wh, start)
    assert np.all(np.diff(refined.prod(1)) >= 0)  # sorted by area


def test_box_shapes_resize_modes_and_helpers():
    recs = [{"w": 200, "h": 100, "gt_bbox": np.array([[0, 0, 20, 10], [5, 5, 6, 6]], np.float32)},
            {"w": 320, "h": 320, "gt_bbox": np.array([[10, 10, 42, 74]], np.float32)}]
    np.testing.assert_allclose(ac.box_shapes(recs, (320, 320)), [[32, 32], [1.6, 3.2], [32, 64]])
    np.testing.assert_allclose(ac.box_shapes(recs, (320, 320), keep_ratio=True),
                               [[32, 16], [32, 64]])  # the 1.6 x 1.6 px box is dropped
    assert ac.split_masks(9, 3) == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    assert ac.split_masks(6, 2) == [[3, 4, 5], [0, 1, 2]]
    assert ac.resize_mode({"batch_transforms": [{"BatchRandomResize": {"keep_ratio": True}}]}) is True
    assert ac.round_anchors(np.array([[0.2, 10.6]])) == [[1, 11]]
    with pytest.raises(ppdet_lite.DatasetError, match="distinct"):
        ac.kmeans_iou(np.ones((5, 2)), 3)


def _places(cfg):
    head = cfg["YOLOv3Head"]
    (target,) = [op["Gt2YoloTarget"] for op in cfg["TrainReader"]["batch_transforms"] if "Gt2YoloTarget" in op]
    return head, target


@pytest.mark.parametrize("n, no_base", [(9, False), (6, True)])
def test_tool_writes_anchors_in_both_places(tmp_path, n, no_base):
    config = os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml")
    out = tmp_path / "anchors.yml"
    argv = ["-c", config, "-n", str(n), "-s", "128", "-i", "100", "--output", str(out),
            "-o", f"TrainDataset.dataset_dir={tmp_path / 'shapes'}", "TrainDataset.num_images=40",
            "TrainDataset.image_size=64"]
    anchors = anchor_cluster_tool.main(argv + (["--no_base"] if no_base else []))
    assert len(anchors) == n and all(isinstance(v, int) for a in anchors for v in a)
    cfg = ppdet_lite.load_config(str(out))
    head, target = _places(cfg)
    assert head["anchors"] == target["anchors"] == anchors
    # everything else of the reader's batch_transforms is kept, in order
    base = ppdet_lite.load_config(config)
    names = [next(iter(op)) for op in cfg["TrainReader"]["batch_transforms"]]
    assert names == [next(iter(op)) for op in base["TrainReader"]["batch_transforms"]]
    if no_base:
        assert "YOLOv3" not in cfg  # overrides only
        assert head["anchor_masks"] == target["anchor_masks"] == [[4, 5], [2, 3], [0, 1]]
    else:  # a full config: the base's model plus the new anchors
        assert cfg["YOLOv3"]["backbone"] == "MobileNetV3" and cfg["epoch"] == base["epoch"]
        assert head["anchor_masks"] == target["anchor_masks"] == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]

"""Mosaic: where the four images' pixels and boxes land, clipping, dropping of tiny remnants,
and the dataset grouping driven by mosaic_epoch through build_dataloader."""

import numpy as np
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.data import DetDataset, build_dataloader
from ppdet_lite.data.mosaic import Mosaic


def _sample(i, boxes, size=(100, 100)):
    return {"image": np.full(size + (3,), 40 * (i + 1), np.uint8), "im_id": np.array([i]),
            "gt_bbox": np.array(boxes, np.float32).reshape(-1, 4),
            "gt_class": np.full((len(boxes), 1), i, np.int32),
            "is_crowd": np.zeros((len(boxes), 1), np.int32)}


def test_pixels_and_boxes_go_where_their_quadrant_says():
    samples = [
        _sample(0, [[10, 10, 30, 30], [60, 60, 90, 90]]),       # top-left shows its bottom-right
        _sample(1, [[40, 40, 70, 70], [40, 5, 49, 12]]),          # top-right shows bottom-left
        _sample(2, [[120, 5, 180, 20]], size=(50, 200)),          # bottom-left shows top-right
        _sample(3, [[10, 10, 30, 30], [45, 48, 60, 70]]),         # bottom-right shows top-left
    ]
    out = Mosaic(target_size=[200, 200], center_range=(0.5, 0.5))(samples)
    im = out["image"]
    assert im.shape == (200, 200, 3) and im.dtype == np.uint8
    assert [im[50, 50, 0], im[50, 150, 0], im[150, 50, 0], im[150, 150, 0]] == [40, 80, 120, 160]
    np.testing.assert_allclose(out["gt_bbox"], [
        [20, 20, 80, 80],       # image 0's second box: x2, then shifted by (-100, -100)
        [180, 0, 200, 40],      # image 1's first box clipped to its quadrant (22 % of it kept)
        [20, 120, 80, 180],     # image 2 (200x50 -> x1, x4), shifted by (-100, +100)
        [120, 120, 160, 160],   # image 3's first box, shifted by (+100, +100)
    ])
    # dropped: image 0's first box and image 1's second (outside their quadrants), image 3's
    # second box clipped to 10 x 4 px, 3 % of its area (< min_area_ratio 0.2)
    assert out["gt_class"].ravel().tolist() == [0, 1, 2, 3]
    assert out["is_crowd"].shape == (4, 1)
    assert out["im_shape"].tolist() == [200, 200] and out["scale_factor"].tolist() == [1, 1]


def test_min_size_and_area_ratio_drop_tiny_remnants():
    box = [[0, 0, 100, 100]]
    samples = [_sample(i, box) for i in range(4)]
    # centre at (10, 190): the top-left quadrant is 10 px wide, the top-right 190, ...
    m = Mosaic(target_size=[200, 200], center_range=(0.05, 0.95), min_size=12., min_area_ratio=0.)
    np.random.seed(3)
    cx, cy = [int(round(np.random.uniform(0.05, 0.95) * 200)) for _ in range(2)]
    np.random.seed(3)
    out = m(samples)
    widths = out["gt_bbox"][:, 2] - out["gt_bbox"][:, 0]
    heights = out["gt_bbox"][:, 3] - out["gt_bbox"][:, 1]
    assert np.all(widths >= 12) and np.all(heights >= 12)
    quads = [(cx, cy), (200 - cx, cy), (cx, 200 - cy), (200 - cx, 200 - cy)]
    assert len(out["gt_bbox"]) == sum(1 for w, h in quads if w >= 12 and h >= 12)


def test_single_sample_passes_and_bad_args():
    s = _sample(0, [[1, 1, 5, 5]])
    assert Mosaic()(s) is s
    with pytest.raises(ValueError, match="needs 4 samples"):
        Mosaic()([s, s])
    with pytest.raises(ConfigError, match="center_range"):
        Mosaic(center_range=(0.6, 0.4))


class _Memory(DetDataset):
    def parse_dataset(self):
        rng = np.random.RandomState(0)
        self.roidbs = [dict(_sample(i % 4, [[10, 10, 60, 60]]),
                            image=rng.randint(0, 255, (64, 80, 3)).astype(np.uint8),
                            im_shape=np.array([64., 80.], np.float32),
                            scale_factor=np.array([1., 1.], np.float32), h=64, w=80)
                       for i in range(8)]


@pytest.mark.parametrize("mosaic_epoch,expect", [(1, (96, 96)), (0, (96, 96)), (-1, (64, 80))])
def test_loader_groups_four_while_mosaic_epoch(mosaic_epoch, expect):
    reader = {"sample_transforms": [{"Decode": {}}, {"Mosaic": {"target_size": [96, 96]}}],
              "batch_transforms": [], "batch_size": 2, "mosaic_epoch": mosaic_epoch,
              "collate_batch": False}
    loader = build_dataloader(reader, _Memory(), num_classes=4, mode="train", worker_num=0,
                              seed=0)
    batch = next(iter(loader))
    first = batch[0] if isinstance(batch, list) else batch
    image = first["image"] if isinstance(first, dict) else first
    assert tuple(np.asarray(image).shape[-3:-1]) == expect

"""Gt2YoloTarget (best-anchor assignment; identical arrays to PaddleDetection) and BatchRandomResize."""
import copy

import numpy as np
import pytest

from ppdet_lite.data.batch_transforms import BatchRandomResize, Gt2YoloTarget
from tests.data.conftest import ppdet_or_skip

ANCHORS = [[10, 15], [24, 36], [72, 42], [35, 87], [102, 96], [60, 170], [220, 125], [128, 222],
           [264, 266]]
MASKS = [[6, 7, 8], [3, 4, 5], [0, 1, 2]]


def _batch(rng, bs=3, size=128, m=10, nc=5, collide=False):
    out = []
    for _ in range(bs):
        n = int(rng.integers(0, m))
        c = rng.uniform(0.02, 0.98, (m, 2))
        if collide:  # few distinct cells and shapes -> many boxes share a cell and an anchor
            c = np.floor(c * 3) / 3 + 0.1
        wh = rng.uniform(0.02, 0.95, (m, 2))
        if collide:
            wh = np.round(wh * 4) / 4 + 0.05
        box = np.concatenate([c, wh], 1).astype(np.float32)
        box[n:] = 0
        cls = rng.integers(0, nc, m).astype(np.int32)
        score = rng.uniform(0.2, 1.0, m).astype(np.float32)
        out.append({"image": np.zeros((3, size, size), np.float32), "gt_bbox": box,
                    "gt_class": cls, "gt_score": score})
    return out


def test_each_box_goes_to_its_best_anchor():
    size = 320
    # one box per anchor, exactly anchor-shaped, at distinct positions
    boxes = np.array([[0.1 + 0.09 * k, 0.5, aw / size, ah / size] for k, (aw, ah) in enumerate(ANCHORS)],
                     np.float32)
    s = {"image": np.zeros((3, size, size), np.float32), "gt_bbox": boxes,
         "gt_class": np.arange(9, dtype=np.int32) % 4}
    out = Gt2YoloTarget(ANCHORS, MASKS, [32, 16, 8], num_classes=4)([s])[0]
    assert "gt_class" not in out and "gt_score" not in out
    for level, (mask, ds) in enumerate(zip(MASKS, [32, 16, 8])):
        t = out[f"target{level}"]
        g = size // ds
        assert t.shape == (3, 10, g, g) and t.dtype == np.float32
        assert (t[:, 5] > 0).sum() == 3                        # exactly its own three anchors
        for n, a in enumerate(mask):
            cx, cy, w, h = boxes[a]
            gi, gj = int(cx * g), int(cy * g)
            np.testing.assert_allclose(t[n, :6, gj, gi], [cx * g - gi, cy * g - gj, 0, 0,
                                                          2 - w * h, 1], atol=1e-6)
            assert t[n, 6 + a % 4, gj, gi] == 1 and t[n, 6:, gj, gi].sum() == 1


def test_padding_and_zero_score_boxes_are_ignored():
    s = {"image": np.zeros((3, 64, 64), np.float32),
         "gt_bbox": np.array([[0.5, 0.5, 0.3, 0.3], [0, 0, 0, 0], [0.2, 0.2, 0.1, 0.1]], np.float32),
         "gt_class": np.array([1, 0, 2], np.int32), "gt_score": np.array([1, 1, 0], np.float32)}
    out = Gt2YoloTarget(ANCHORS, MASKS, [32, 16, 8], num_classes=3)([s])[0]
    assert sum(int((out[f"target{i}"][:, 5] > 0).sum()) for i in range(3)) == 1


@pytest.mark.parametrize("iou_thresh", [1.0, 0.25])
def test_matches_paddledetection(iou_thresh):
    ppdet_or_skip()
    from ppdet.data.transform.batch_operators import Gt2YoloTarget as Ref

    rng = np.random.default_rng(0)
    for trial in range(12):
        size = int(rng.choice([96, 128, 160]))
        batch = _batch(rng, size=size, collide=trial % 2 == 0)
        ours = Gt2YoloTarget(ANCHORS, MASKS, [32, 16, 8], 5, iou_thresh)(copy.deepcopy(batch))
        ref = Ref(ANCHORS, MASKS, [32, 16, 8], 5, iou_thresh)(copy.deepcopy(batch))
        for a, b in zip(ours, ref):
            assert sorted(a) == sorted(b)
            for k in range(3):
                np.testing.assert_array_equal(a[f"target{k}"], b[f"target{k}"])
    # two-level mbv3 layout
    batch = _batch(rng, size=128, collide=True)
    two = dict(anchors=[[11, 18], [34, 47], [51, 126], [115, 71], [120, 195], [254, 235]],
               anchor_masks=[[3, 4, 5], [0, 1, 2]], downsample_ratios=[32, 16], num_classes=5,
               iou_thresh=iou_thresh)
    ours = Gt2YoloTarget(**two)(copy.deepcopy(batch))
    ref = Ref(**two)(copy.deepcopy(batch))
    for a, b in zip(ours, ref):
        for k in range(2):
            np.testing.assert_array_equal(a[f"target{k}"], b[f"target{k}"])


def test_batch_random_resize():
    rng = np.random.default_rng(0)
    samples = [{"image": rng.uniform(0, 255, (h, w, 3)).astype(np.float32),
                "gt_bbox": np.array([[0, 0, w, h]], np.float32),
                "im_shape": np.array([h, w], np.float32), "scale_factor": np.ones(2, np.float32)}
               for h, w in [(50, 70), (90, 40)]]
    seen = set()
    for seed in range(12):
        np.random.seed(seed)
        out = BatchRandomResize([64, 96, 128], keep_ratio=False, random_interp=True)(copy.deepcopy(samples))
        sizes = {o["image"].shape[:2] for o in out}
        assert len(sizes) == 1
        (h, w), = sizes
        seen.add(h)
        for o, s in zip(out, samples):
            np.testing.assert_allclose(o["gt_bbox"], [[0, 0, w, h]], rtol=1e-5)
            np.testing.assert_allclose(o["scale_factor"], [h / s["image"].shape[0], w / s["image"].shape[1]],
                                       rtol=1e-6)
    assert seen == {64, 96, 128}
    fixed = BatchRandomResize([80, 60], keep_ratio=False, random_size=False)(copy.deepcopy(samples))
    assert {o["image"].shape[:2] for o in fixed} == {(80, 60)}

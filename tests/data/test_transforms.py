"""Sample transforms: effect on boxes, invariants on random inputs, parity with PaddleDetection."""
import copy

import cv2
import numpy as np
import pytest

from ppdet_lite.core.errors import DatasetError
from ppdet_lite.data.transforms import (BboxXYXY2XYWH, Decode, Mixup, NormalizeBox, NormalizeImage,
                                        PadBox, Permute, RandomDistort)
from ppdet_lite.data.transforms_geometry import RandomCrop, RandomExpand, RandomFlip, Resize
from tests.data.conftest import ppdet_or_skip


def _sample(rng, h=60, w=80, n=5):
    xy = rng.uniform(0, [w - 10, h - 10], (n, 2))
    wh = rng.uniform(2, [w, h], (n, 2))
    box = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1).astype(np.float32)
    return {"image": rng.integers(0, 256, (h, w, 3)).astype(np.uint8), "gt_bbox": box,
            "gt_class": rng.integers(0, 4, (n, 1)).astype(np.int32),
            "gt_score": np.ones((n, 1), np.float32), "is_crowd": np.zeros((n, 1), np.int32),
            "im_shape": np.array([h, w], np.float32), "scale_factor": np.ones(2, np.float32)}


def test_decode(tmp_path):
    im = np.random.default_rng(0).integers(0, 256, (30, 40, 3)).astype(np.uint8)
    path = str(tmp_path / "a.png")
    cv2.imwrite(path, im)
    s = Decode()({"im_file": path, "im_id": np.array([1]), "h": 30, "w": 40})
    np.testing.assert_array_equal(s["image"], im[..., ::-1])          # RGB
    assert "im_file" not in s and (s["h"], s["w"]) == (30, 40)
    np.testing.assert_array_equal(s["im_shape"], [30, 40])
    np.testing.assert_array_equal(s["scale_factor"], [1, 1])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="bad.jpg"):
        Decode()({"im_file": str(bad)})
    with pytest.raises(DatasetError, match="not found"):
        Decode()({"im_file": str(tmp_path / "missing.jpg")})


def test_flip_mirrors_and_twice_is_identity():
    s = _sample(np.random.default_rng(0))
    orig = copy.deepcopy(s)
    flip = RandomFlip(prob=1.0)
    once = flip(copy.deepcopy(s))
    np.testing.assert_array_equal(once["image"], orig["image"][:, ::-1])
    np.testing.assert_allclose(once["gt_bbox"][:, [0, 2]], 80 - orig["gt_bbox"][:, [2, 0]])
    np.testing.assert_allclose(once["gt_bbox"][:, [1, 3]], orig["gt_bbox"][:, [1, 3]])
    twice = flip(once)
    np.testing.assert_array_equal(twice["image"], orig["image"])
    np.testing.assert_allclose(twice["gt_bbox"], orig["gt_bbox"], atol=1e-5)
    assert RandomFlip(prob=0.0)(copy.deepcopy(s))["gt_bbox"].tolist() == orig["gt_bbox"].tolist()


def test_crop_keeps_boxes_inside_and_fields_aligned():
    crop = RandomCrop()
    cropped = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        np.random.seed(seed)
        s = _sample(rng, n=int(rng.integers(1, 8)))
        h0, w0 = s["image"].shape[:2]
        out = crop(copy.deepcopy(s))
        h, w = out["image"].shape[:2]
        box = out["gt_bbox"]
        cropped += (h, w) != (h0, w0)
        assert len(box) >= 1 and box.dtype == np.float32
        assert (box[:, :2] >= 0).all() and (box[:, 2] <= w).all() and (box[:, 3] <= h).all()
        assert ((box[:, 2:] - box[:, :2]) > 0).all()
        for key in ("gt_class", "gt_score", "is_crowd"):
            assert len(out[key]) == len(box)
    assert cropped > 20  # it does crop most of the time


def test_expand_shifts_boxes():
    for seed in range(10):
        np.random.seed(seed)
        s = _sample(np.random.default_rng(seed))
        s["image"][:] = 200
        out = RandomExpand(ratio=3.0, prob=0.0, fill_value=0)(copy.deepcopy(s))
        im = out["image"]
        assert im.dtype == np.float32 and im.shape[0] >= 60 and im.shape[0] <= 180
        ys, xs = np.nonzero(im[..., 0])
        if len(ys) == 0 or im.shape[:2] == (60, 80):
            continue
        y, x = ys.min(), xs.min()
        assert (ys.max() - y + 1, xs.max() - x + 1) == (60, 80)
        np.testing.assert_allclose(out["gt_bbox"], s["gt_bbox"] + [x, y, x, y])


@pytest.mark.parametrize("keep_ratio", [False, True])
def test_resize_scales_boxes_and_sets_shapes(keep_ratio):
    s = _sample(np.random.default_rng(1), h=60, w=80)
    s["scale_factor"] = np.array([2.0, 2.0], np.float32)
    out = Resize([120, 100], keep_ratio=keep_ratio)(copy.deepcopy(s))
    sy, sx = (120 / 60, 100 / 80) if not keep_ratio else (min(100 / 60, 120 / 80),) * 2
    h, w = out["image"].shape[:2]
    assert (h, w) == ((120, 100) if not keep_ratio else (90, 120))
    np.testing.assert_allclose(out["im_shape"], [60 * sy, 80 * sx])
    np.testing.assert_allclose(out["scale_factor"], [2 * sy, 2 * sx], rtol=1e-6)
    np.testing.assert_allclose(out["gt_bbox"], np.minimum(s["gt_bbox"] * [sx, sy, sx, sy],
                                                          [w, h, w, h]), rtol=1e-5)
    assert out["image"].dtype == np.float32


def test_box_format_ops():
    s = {"image": np.zeros((50, 100, 3), np.float32),
         "gt_bbox": np.array([[10, 5, 30, 25], [0, 0, 100, 50]], np.float32),
         "gt_class": np.array([[2], [3]], np.int32), "gt_score": np.array([[0.3], [0.7]], np.float32),
         "is_crowd": np.zeros((2, 1), np.int32)}
    s = NormalizeBox()(s)
    np.testing.assert_allclose(s["gt_bbox"], [[0.1, 0.1, 0.3, 0.5], [0, 0, 1, 1]])
    s = PadBox(num_max_boxes=4)(s)
    assert s["gt_bbox"].shape == (4, 4) and not s["gt_bbox"][2:].any()
    assert s["gt_class"].tolist() == [2, 3, 0, 0] and s["gt_class"].dtype == np.int32
    np.testing.assert_allclose(s["gt_score"], [0.3, 0.7, 0, 0])
    s = BboxXYXY2XYWH()(s)
    np.testing.assert_allclose(s["gt_bbox"][:2], [[0.2, 0.3, 0.2, 0.4], [0.5, 0.5, 1, 1]], rtol=1e-6)
    np.testing.assert_array_equal(s["gt_bbox"][2:], 0)
    # truncation, and an image without boxes
    t = PadBox(num_max_boxes=1)({"gt_bbox": np.ones((3, 4), np.float32),
                                 "gt_class": np.array([[5], [6], [7]], np.int32)})
    assert t["gt_class"].tolist() == [5]
    e = PadBox(num_max_boxes=2)({"gt_bbox": np.zeros((0, 4), np.float32),
                                 "gt_class": np.zeros((0, 1), np.int32)})
    assert e["gt_bbox"].shape == (2, 4) and e["gt_class"].tolist() == [0, 0]


def test_normalize_and_permute():
    im = np.random.default_rng(0).integers(0, 256, (4, 5, 3)).astype(np.uint8)
    out = Permute()(NormalizeImage([0.5, 0.4, 0.3], [0.2, 0.25, 0.5], True)({"image": im}))
    ref = ((im / 255.0 - [0.5, 0.4, 0.3]) / [0.2, 0.25, 0.5]).transpose(2, 0, 1)
    assert out["image"].shape == (3, 4, 5) and out["image"].dtype == np.float32
    np.testing.assert_allclose(out["image"], ref, rtol=1e-5, atol=1e-5)


def test_mixup_weights_sum_to_one():
    rng = np.random.default_rng(0)
    a, b = _sample(rng, n=2), _sample(rng, h=70, w=50, n=3)
    for seed in range(5):
        np.random.seed(seed)
        f = float(np.clip(np.random.beta(1.5, 1.5), 0, 1))
        np.random.seed(seed)
        out = Mixup(1.5, 1.5)([copy.deepcopy(a), copy.deepcopy(b)])
        sc = out["gt_score"].ravel()
        assert out["gt_bbox"].shape == (5, 4) and out["gt_class"].shape == (5, 1)
        np.testing.assert_allclose(sc[:2], f, rtol=1e-6)
        np.testing.assert_allclose(sc[:2] + sc[2:4], 1.0, rtol=1e-6)
        assert out["image"].shape == (70, 80, 3) and out["image"].dtype == np.uint8
        expect = np.float32(a["image"][0, 0]) * np.float32(f) + np.float32(b["image"][0, 0]) * np.float32(1 - f)
        np.testing.assert_allclose(out["image"][0, 0], expect.astype(np.uint8), atol=1)
    single = _sample(rng)
    assert Mixup()(single) is single


def test_distort_changes_colour_only():
    s = _sample(np.random.default_rng(0))
    np.random.seed(0)
    out = RandomDistort(hue=[-18, 18, 0.0], saturation=[0.5, 1.5, 0.0], contrast=[0.5, 1.5, 0.0],
                        brightness=[0.5, 1.5, 0.0])(copy.deepcopy(s))
    assert out["image"].dtype == np.float32 and out["image"].shape == s["image"].shape
    assert not np.allclose(out["image"], s["image"])
    np.testing.assert_array_equal(out["gt_bbox"], s["gt_bbox"])


def test_random_ops_match_paddledetection():
    """Same seed -> same draws as PaddleDetection's ops: distort, expand, flip agree numerically."""
    ppdet_or_skip()
    from ppdet.data.transform import operators as ref

    pairs = [(RandomDistort(), ref.RandomDistort()),
             (RandomExpand(fill_value=[123.675, 116.28, 103.53]),
              ref.RandomExpand(fill_value=[123.675, 116.28, 103.53])),
             (RandomFlip(), ref.RandomFlip()),
             (Resize([64, 96], keep_ratio=False, interp=2), ref.Resize([64, 96], False, interp=2)),
             (Resize(100, keep_ratio=True), ref.Resize(100, True)),
             (NormalizeBox(), ref.NormalizeBox()), (PadBox(7), ref.PadBox(7)),
             (BboxXYXY2XYWH(), ref.BboxXYXY2XYWH()), (NormalizeImage(), ref.NormalizeImage()),
             (Permute(), ref.Permute())]
    for seed in range(6):
        s = _sample(np.random.default_rng(seed))
        for ours, theirs in pairs:
            np.random.seed(seed)
            a = ours(copy.deepcopy(s))
            np.random.seed(seed)
            b = theirs(copy.deepcopy(s))
            assert sorted(a) == sorted(b), type(ours).__name__
            for key in a:
                np.testing.assert_allclose(np.asarray(a[key], np.float64), np.asarray(b[key], np.float64),
                                           rtol=1e-4, atol=1e-3, err_msg=f"{type(ours).__name__} {key}")
            s = a

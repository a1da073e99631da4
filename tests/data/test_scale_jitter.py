"""RandomScaleJitter: EfficientDet's random resize, crop and pad (data/transforms_geometry.py)."""
import numpy as np
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.data.transforms_geometry import RandomScaleJitter

FILL = (124, 116, 104)


def sample(h=60, w=80):
    """A grey image with two coloured rectangles and their boxes."""
    im = np.full((h, w, 3), 30, np.uint8)
    boxes = np.array([[10, 8, 30, 28], [50, 30, 76, 56]], np.float32)
    for k, (x1, y1, x2, y2) in enumerate(boxes.astype(int)):
        im[y1:y2, x1:x2] = (200, 40 + 100 * k, 90)
    return {"image": im, "gt_bbox": boxes, "gt_class": np.array([[0], [1]], np.int32),
            "is_crowd": np.zeros((2, 1), np.int32), "im_shape": np.array([h, w], np.float32),
            "scale_factor": np.ones(2, np.float32)}


def test_scale_one_on_the_target_size_is_the_identity():
    s = sample(60, 80)
    out = RandomScaleJitter([60, 80], scale_range=(1.0, 1.0))(dict(s))
    assert np.array_equal(out["image"], s["image"]) and np.array_equal(out["gt_bbox"], s["gt_bbox"])
    assert out["im_shape"].tolist() == [60, 80] and out["scale_factor"].tolist() == [1, 1]


def test_a_small_scale_pads_bottom_right_with_the_fill():
    out = RandomScaleJitter(64, scale_range=(0.5, 0.5))(sample(60, 80))
    scale = 32 / 80  # the longer side bounds: 80 -> 32, 60 -> 24
    assert out["image"].shape == (64, 64, 3)
    assert (out["image"][24:] == FILL).all() and (out["image"][:, 32:] == FILL).all()
    assert (out["image"][:24, :32] != FILL).any(2).all()
    np.testing.assert_allclose(out["gt_bbox"], sample()["gt_bbox"] * scale, atol=1e-5)
    np.testing.assert_allclose(out["scale_factor"], [scale, scale])


@pytest.mark.parametrize("seed", range(6))
def test_a_large_scale_crops_and_the_boxes_follow_the_pixels(seed):
    """At 2-3x the window is a random crop: each kept box covers its rectangle's colour in the
    output, boxes outside the window are dropped with their class."""
    np.random.seed(seed)
    out = RandomScaleJitter([48, 64], scale_range=(2.0, 3.0))(sample())
    assert out["image"].shape == (48, 64, 3)
    assert len(out["gt_bbox"]) == len(out["gt_class"]) == len(out["is_crowd"])
    for (x1, y1, x2, y2), (cls,) in zip(out["gt_bbox"], out["gt_class"]):
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 48
        inner = out["image"][int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
        if inner.size:
            assert (inner == (200, 40 + 100 * cls, 90)).all(2).mean() > 0.95
    colours = {k: ((out["image"] == (200, 40 + 100 * k, 90)).all(2)).sum() for k in (0, 1)}
    kept = set(out["gt_class"][:, 0].tolist())
    for k in (0, 1):  # a rectangle visible in the window keeps its box, a kept box is visible
        assert (colours[k] <= 20 or k in kept) and (k not in kept or colours[k] > 0), (colours, kept)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="scale_range"):
        RandomScaleJitter(64, scale_range=(2.0, 1.0))
    with pytest.raises(ConfigError, match="target_size"):
        RandomScaleJitter([64, 64, 3])


def test_efficientdet_coco_train_reader_feeds_a_training_step(tmp_path):
    """configs/efficientdet_d0.yml's TrainReader (scale jitter, flip, ImageNet normalisation,
    PadBox) on a few shapes images, its target size lowered to 128: fixed-size batches with
    boxes inside the image, and D0 trains on one (finite loss, gradients)."""
    import paddle

    import ppdet_lite
    from ppdet_lite.data import COCODataSet, build_dataloader, make_shapes_dataset

    make_shapes_dataset(str(tmp_path), num_train=4, num_val=0, image_size=160)
    cfg = ppdet_lite.load_config("configs/efficientdet_d0.yml", {"num_classes": 4})
    reader = dict(cfg["TrainReader"], batch_size=2, use_shared_memory=False)
    reader["sample_transforms"][1]["RandomScaleJitter"]["target_size"] = 128
    ds = COCODataSet(str(tmp_path), "train", "annotations/instances_train.json",
                     ["image", "gt_bbox", "gt_class", "is_crowd"])
    batch = next(iter(build_dataloader(reader, ds, 4, "train", worker_num=0, seed=0)))
    boxes = np.asarray(batch["gt_bbox"])
    assert list(batch["image"].shape) == [2, 3, 128, 128] and boxes.shape == (2, 100, 4)
    assert (boxes >= 0).all() and (boxes <= 128).all() and (boxes[:, :, 2] > boxes[:, :, 0]).any()
    paddle.seed(0)
    model = ppdet_lite.build_model(cfg)
    model.train()
    loss = model({k: v if isinstance(v, paddle.Tensor) else paddle.to_tensor(v)
                  for k, v in batch.items() if isinstance(v, (paddle.Tensor, np.ndarray))})["loss"]
    loss.backward()
    assert np.isfinite(float(loss)) and model.head.parameters()[0].grad is not None

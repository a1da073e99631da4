"""build_dataloader: the Tiny reader over generated shapes with 2 workers; errors name the file."""
import copy
import os
import shutil

import numpy as np
import pytest

from ppdet_lite.core.errors import ConfigError, DatasetError
from ppdet_lite.data import COCODataSet, build_dataloader

ANCHORS = [[10, 15], [24, 36], [72, 42], [35, 87], [102, 96], [60, 170], [220, 125], [128, 222],
           [264, 266]]
TRAIN = {
    "sample_transforms": [{"Decode": {}}, {"Mixup": {"alpha": 1.5, "beta": 1.5}},
                          {"RandomDistort": {}}, {"RandomExpand": {"fill_value": [123.675, 116.28, 103.53]}},
                          {"RandomCrop": {}}, {"RandomFlip": {}}],
    "batch_transforms": [
        {"BatchRandomResize": {"target_size": [96, 128, 160], "random_size": True,
                               "random_interp": True, "keep_ratio": False}},
        {"NormalizeBox": {}}, {"PadBox": {"num_max_boxes": 20}}, {"BboxXYXY2XYWH": {}},
        {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "is_scale": True}},
        {"Permute": {}},
        {"Gt2YoloTarget": {"anchor_masks": [[6, 7, 8], [3, 4, 5], [0, 1, 2]], "anchors": ANCHORS,
                           "downsample_ratios": [32, 16, 8]}}],
    "batch_size": 4, "mixup_epoch": 1, "shuffle": True, "drop_last": True, "use_shared_memory": False,
    "inputs_def": {"num_max_boxes": 20}}
EVAL = {"sample_transforms": [{"Decode": {}}, {"Resize": {"target_size": [96, 96], "keep_ratio": False, "interp": 2}},
                              {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                                  "is_scale": True}}, {"Permute": {}}],
        "batch_size": 3}


def _train_set(root):
    return COCODataSet(dataset_dir=root, image_dir="train", anno_path="annotations/instances_train.json",
                       data_fields=["image", "gt_bbox", "gt_class", "is_crowd"])


def test_train_loader_two_workers(shapes_dir):
    loader = build_dataloader(TRAIN, _train_set(shapes_dir), num_classes=4, mode="train",
                              worker_num=2, seed=7)
    assert len(loader) == 6
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == 6
        epochs.append(batches[0]["image"].numpy())
        b = batches[0]
        assert sorted(b) == ["gt_bbox", "im_id", "im_shape", "image", "is_crowd", "scale_factor",
                             "target0", "target1", "target2"]
        n, c, h, w = b["image"].shape
        assert (n, c) == (4, 3) and h == w and h in (96, 128, 160)
        assert str(b["image"].dtype) == "paddle.float32"
        assert b["gt_bbox"].shape == [4, 20, 4] and b["is_crowd"].shape == [4, 20]
        assert b["im_id"].shape == [4, 1] and b["im_shape"].shape == [4, 2]
        np.testing.assert_allclose(b["im_shape"].numpy(), [[h, w]] * 4)
        for k, ds in enumerate([32, 16, 8]):
            assert b[f"target{k}"].shape == [4, 3, 10, h // ds, w // ds]
        assert float(b["target2"][:, :, 5].max()) > 0
    assert not np.array_equal(epochs[0], epochs[1])           # a new epoch reshuffles / re-augments
    # same seed and epoch -> the same batches
    again = build_dataloader(TRAIN, _train_set(shapes_dir), num_classes=4, mode="train",
                             worker_num=2, seed=7)
    np.testing.assert_array_equal(next(iter(again))["image"].numpy(), epochs[0])


def test_eval_loader_keeps_order(shapes_dir):
    ds = COCODataSet(dataset_dir=shapes_dir, image_dir="val", anno_path="annotations/instances_val.json",
                     allow_empty=True)
    batches = list(build_dataloader(EVAL, ds, num_classes=4, mode="eval", worker_num=0))
    assert [b["image"].shape[0] for b in batches] == [3, 3, 2]
    ids = np.concatenate([b["im_id"].numpy().ravel() for b in batches])
    assert ids.tolist() == list(range(1, 9))
    np.testing.assert_allclose(batches[0]["scale_factor"].numpy(), [[0.75, 0.75]] * 3)


def test_corrupt_image_names_the_file(shapes_dir, tmp_path):
    root = str(tmp_path / "copy")
    shutil.copytree(shapes_dir, root)
    with open(os.path.join(root, "train", "000003.jpg"), "wb") as f:
        f.write(b"\xff\xd8 truncated")
    cfg = {**copy.deepcopy(TRAIN), "mixup_epoch": -1, "shuffle": False}
    loader = build_dataloader(cfg, _train_set(root), num_classes=4, mode="train", worker_num=2)
    with pytest.raises(DatasetError, match="000003.jpg"):
        list(loader)
    loader = build_dataloader(cfg, _train_set(root), num_classes=4, mode="train", worker_num=0)
    with pytest.raises(DatasetError, match="000003.jpg"):
        list(loader)


def test_config_errors(shapes_dir):
    bad = {"sample_transforms": [{"Decode": {}}, {"RandomFlipp": {}}]}
    with pytest.raises(ConfigError, match=r"RandomFlip.*TrainReader.sample_transforms\[1\]|"
                                          r"TrainReader.sample_transforms\[1\].*RandomFlip"):
        build_dataloader(bad, _train_set(shapes_dir), 4, "train")
    bad = {"sample_transforms": [{"RandomFlip": {"probb": 0.5}}]}
    with pytest.raises(ConfigError, match="prob"):
        build_dataloader(bad, _train_set(shapes_dir), 4, "train")
    with pytest.raises(ConfigError, match="batch_szie"):
        build_dataloader({"batch_szie": 2}, _train_set(shapes_dir), 4, "train")


def test_paddledetection_reader_keys_not_implemented(shapes_dir):
    """cutmix_epoch / fuse_normalize load at their no-op value only (mosaic_epoch is implemented)."""
    loader = build_dataloader(dict(EVAL, cutmix_epoch=-1, mosaic_epoch=-1, fuse_normalize=False,
                                   collate_batch=False), _train_set(shapes_dir), 4, "eval")
    assert next(iter(loader))["image"].shape == [3, 3, 96, 96]
    for key, on in (("cutmix_epoch", 50), ("fuse_normalize", True)):
        with pytest.raises(ConfigError, match=rf"^EvalReader: {key}: {on}: ppdet_lite does not implement"):
            build_dataloader(dict(EVAL, **{key: on}), _train_set(shapes_dir), 4, "eval")


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_normalize_then_permute_is_fused_bit_equal(dtype):
    """build_ops runs NormalizeImage + Permute as one pass into CHW: the same bits as the two ops."""
    from ppdet_lite.data.loader import build_ops

    specs = [{"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}},
             {"Permute": {}}]
    fused = build_ops(specs, 3, "TrainReader.batch_transforms")
    plain = build_ops(specs[:1], 3, "x") + build_ops(specs[1:], 3, "y")
    assert len(fused) == 1 and fused[0].chw is not None and len(plain) == 2
    rng = np.random.RandomState(0)
    im = (rng.rand(37, 53, 3) * 255).astype(dtype)
    a = fused[0]([{"image": im.copy()}])[0]["image"]
    b = plain[1](plain[0]([{"image": im.copy()}]))[0]["image"]
    assert a.shape == b.shape == (3, 37, 53) and a.dtype == b.dtype == np.float32
    assert np.array_equal(a, b) and a.flags.c_contiguous

"""Synthetic shapes generator: deterministic, valid COCO, self-generating ShapesDataSet."""
import json
import multiprocessing as mp
import os

import numpy as np
import pytest

from ppdet_lite.core.errors import DatasetError
from ppdet_lite.data.shapes import CLASSES, ShapesDataSet, make_shapes_dataset, render_image


def test_deterministic_from_seed(tmp_path):
    a = make_shapes_dataset(str(tmp_path / "a"), num_train=6, num_val=2, image_size=96, seed=5)
    b = make_shapes_dataset(str(tmp_path / "b"), num_train=6, num_val=2, image_size=96, seed=5)
    c = make_shapes_dataset(str(tmp_path / "c"), num_train=6, num_val=0, image_size=96, seed=6)
    ja, jb, jc = (json.load(open(p["train"])) for p in (a, b, c))
    assert ja["annotations"] == jb["annotations"] and ja["annotations"] != jc["annotations"]
    for name in ("000001.jpg", "000006.jpg"):
        assert (tmp_path / "a/train" / name).read_bytes() == (tmp_path / "b/train" / name).read_bytes()
    jv = json.load(open(a["val"]))
    assert jv["annotations"] != ja["annotations"][:len(jv["annotations"])]  # splits differ


def test_json_is_valid_coco_and_boxes_are_sane(shapes_dir):
    from pycocotools.coco import COCO

    coco = COCO(os.path.join(shapes_dir, "annotations/instances_train.json"))
    assert len(coco.getImgIds()) == 24
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    for img_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert 1 <= len(anns) <= 6
        for a in anns:
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
            assert 0.12 * 128 <= max(w, h) <= 0.6 * 128 + 2 and a["area"] > 0
            assert coco.annToMask(a).sum() > 0


def test_render_is_fast_and_varied():
    rng = np.random.default_rng(0)
    counts, classes = [], set()
    for _ in range(40):
        im, boxes, cls, _, _ = render_image(rng, 64, 96)
        assert im.shape == (64, 96, 3) and im.dtype == np.uint8
        counts.append(len(boxes))
        classes |= set(cls.tolist())
    assert classes == {0, 1, 2, 3} and min(counts) >= 1 and max(counts) >= 4


def _race(root):
    ds = ShapesDataSet(dataset_dir=root, image_dir="train", anno_path="annotations/train.json",
                       num_images=5, image_size=64, seed=1)
    ds.parse_dataset()
    return len(ds.roidbs)


def test_shapes_dataset_generates_itself_once_under_a_race(tmp_path):
    root = str(tmp_path / "shapes")
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        assert pool.map(_race, [root, root]) == [5, 5]
    assert sorted(f for f in os.listdir(os.path.join(root, "train")) if f.endswith(".jpg")) == \
        [f"{i:06d}.jpg" for i in range(1, 6)]
    assert not [d for d in os.listdir(root) if d.startswith(".tmp")]       # temp dirs cleaned
    ds = ShapesDataSet(dataset_dir=root, image_dir="train", anno_path="annotations/train.json",
                       num_images=5, image_size=64, seed=1, data_fields=["image", "gt_bbox", "gt_class"])
    assert ds.get_label_list() == list(CLASSES)
    ds.parse_dataset()
    r = ds.roidbs[0]
    assert r["gt_bbox"].shape[1] == 4 and r["gt_class"].max() < 4


def test_existing_split_with_other_settings_is_refused(tmp_path):
    root = str(tmp_path / "shapes")
    kw = dict(dataset_dir=root, image_dir="train", anno_path="annotations/train.json", image_size=64)
    ShapesDataSet(num_images=3, **kw).check_or_download_dataset()
    ShapesDataSet(num_images=3, **kw).check_or_download_dataset()     # same settings: reused
    with pytest.raises(DatasetError, match="num_images: 3 there, 4 asked"):
        ShapesDataSet(num_images=4, **kw).check_or_download_dataset()

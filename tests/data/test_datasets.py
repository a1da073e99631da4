"""COCODataSet / VOCDataSet / ImageFolder on small files written here."""
import json
import os

import cv2
import numpy as np
import pytest

from ppdet_lite.core.errors import DatasetError
from ppdet_lite.data import COCODataSet, ImageFolder, VOCDataSet
from tests.data.conftest import ppdet_or_skip


def _write_images(root, names, h=40, w=60):
    os.makedirs(root, exist_ok=True)
    for n in names:
        cv2.imwrite(os.path.join(root, n), np.full((h, w, 3), 128, np.uint8))


def _coco(tmp_path, n_images=3):
    _write_images(str(tmp_path / "img"), [f"{i}.jpg" for i in range(1, n_images + 1)])
    anns = [
        # image 1: a box, a crowd box, a zero-area box, an all-zero box, a box crossing the right edge
        dict(id=1, image_id=1, category_id=7, bbox=[1, 2, 10, 20], area=200, iscrowd=0),
        dict(id=2, image_id=1, category_id=3, bbox=[5, 5, 10, 10], area=100, iscrowd=1),
        dict(id=3, image_id=1, category_id=3, bbox=[5, 5, 0, 10], area=0, iscrowd=0),
        dict(id=4, image_id=1, category_id=3, bbox=[0, 0, 0, 0], area=0, iscrowd=0),
        dict(id=5, image_id=1, category_id=11, bbox=[50, 30, 20, 5], area=100, iscrowd=0),
        # image 3: one box; image 2: nothing
        dict(id=6, image_id=3, category_id=3, bbox=[0.5, 1.25, 4, 4], area=16, iscrowd=0),
    ]
    data = {"images": [dict(id=i, file_name=f"{i}.jpg", height=40, width=60)
                       for i in (3, 1, 2)][:n_images],
            "annotations": anns,
            "categories": [dict(id=3, name="a"), dict(id=7, name="b"), dict(id=11, name="c")]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return dict(dataset_dir=str(tmp_path), image_dir="img", anno_path="ann.json",
                data_fields=["image", "gt_bbox", "gt_class", "is_crowd"])


def test_coco_labels_crowd_degenerate(tmp_path):
    ds = COCODataSet(**_coco(tmp_path))
    ds.parse_dataset()
    assert ds.catid2clsid == {3: 0, 7: 1, 11: 2}
    assert ds.cname2cid == {"a": 0, "b": 1, "c": 2}
    assert ds.get_label_list() == ["a", "b", "c"] and ds.num_classes == 3
    assert [int(r["im_id"][0]) for r in ds.roidbs] == [1, 3]        # image 2 empty: skipped
    r1 = ds.roidbs[0]
    np.testing.assert_allclose(r1["gt_bbox"], [[1, 2, 11, 22], [50, 30, 60, 35]])  # clipped at w
    assert r1["gt_class"].ravel().tolist() == [1, 2] and r1["gt_class"].dtype == np.int32
    assert r1["is_crowd"].shape == (2, 1) and r1["im_id"].dtype == np.int64
    assert (r1["h"], r1["w"]) == (40.0, 60.0)
    np.testing.assert_allclose(ds.roidbs[1]["gt_bbox"], [[0.5, 1.25, 4.5, 5.25]])
    assert len(ds) == 2


def test_coco_options(tmp_path):
    kw = _coco(tmp_path)
    ds = COCODataSet(load_crowd=True, allow_empty=True, **kw)
    ds.parse_dataset()
    assert sorted(int(r["im_id"][0]) for r in ds.roidbs) == [1, 2, 3]
    r1 = [r for r in ds.roidbs if r["im_id"][0] == 1][0]
    assert r1["is_crowd"].ravel().tolist() == [0, 1, 0]
    empty = [r for r in ds.roidbs if r["im_id"][0] == 2][0]
    assert empty["gt_bbox"].shape == (0, 4)
    ds = COCODataSet(sample_num=1, repeat=3, **kw)
    ds.parse_dataset()
    assert len(ds.roidbs) == 1 and len(ds) == 3


def test_coco_matches_paddledetection(tmp_path):
    ppdet_or_skip()
    from ppdet.data.source.coco import COCODataSet as Ref

    kw = _coco(tmp_path)
    # in-image boxes only: ppdet_lite additionally clips boxes crossing the border
    data = json.loads((tmp_path / "ann.json").read_text())
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 5]
    data["categories"] = data["categories"][::-1]   # labels follow the json's category order
    (tmp_path / "ann.json").write_text(json.dumps(data))
    for extra in ({}, {"load_crowd": True}, {"allow_empty": True}):
        ours, ref = COCODataSet(**kw, **extra), Ref(**kw, **extra)
        ours.parse_dataset()
        ref.parse_dataset()
        assert ours.catid2clsid == ref.catid2clsid == {11: 0, 7: 1, 3: 2}
        assert ours.cname2cid == ref.cname2cid
        assert len(ours.roidbs) == len(ref.roidbs)
        for a, b in zip(ours.roidbs, ref.roidbs):
            for key in ("im_file", "h", "w", "im_id", "gt_bbox", "gt_class", "is_crowd"):
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_coco_missing_files(tmp_path):
    with pytest.raises(DatasetError, match="anno_path"):
        COCODataSet(dataset_dir=str(tmp_path), image_dir="", anno_path="nope.json").parse_dataset()
    kw = _coco(tmp_path)
    with pytest.raises(DatasetError, match="image_dir"):
        COCODataSet(**{**kw, "image_dir": "missing"}).parse_dataset()


def _voc(tmp_path, extra_obj=""):
    _write_images(str(tmp_path / "JPEGImages"), ["a.jpg", "b.jpg"])
    os.makedirs(tmp_path / "Annotations", exist_ok=True)

    def obj(name, box, diff=0):
        return (f"<object><name>{name}</name><difficult>{diff}</difficult><bndbox><xmin>{box[0]}"
                f"</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>")
    xml = ("<annotation><size><width>60</width><height>40</height></size>{}</annotation>")
    (tmp_path / "Annotations" / "a.xml").write_text(xml.format(
        obj("dog", [1, 2, 30, 20]) + obj("cat", [10, 10, 100, 50], 1) + obj("cat", [5, 5, 5, 9])))
    (tmp_path / "Annotations" / "b.xml").write_text(xml.format(extra_obj))
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "list.txt").write_text("JPEGImages/a.jpg Annotations/a.xml\n"
                                       "JPEGImages/b.jpg Annotations/b.xml\n")
    return dict(dataset_dir=str(tmp_path), anno_path="list.txt", label_list="labels.txt",
                data_fields=["image", "gt_bbox", "gt_class", "difficult"])


def test_voc(tmp_path):
    ds = VOCDataSet(**_voc(tmp_path))
    ds.parse_dataset()
    assert ds.cname2cid == {"cat": 0, "dog": 1} and ds.get_label_list() == ["cat", "dog"]
    assert len(ds.roidbs) == 1                                    # b.xml has no object
    r = ds.roidbs[0]
    np.testing.assert_allclose(r["gt_bbox"], [[1, 2, 30, 20], [10, 10, 59, 39]])  # clipped to w-1
    assert r["gt_class"].ravel().tolist() == [1, 0] and r["difficult"].ravel().tolist() == [0, 1]
    ds = VOCDataSet(allow_empty=True, **_voc(tmp_path))
    ds.parse_dataset()
    assert len(ds.roidbs) == 2


def test_voc_matches_paddledetection(tmp_path):
    ppdet_or_skip()
    from ppdet.data.source.voc import VOCDataSet as Ref

    kw = _voc(tmp_path)
    ours, ref = VOCDataSet(**kw), Ref(**kw)
    ours.parse_dataset()
    ref.parse_dataset()
    assert ours.cname2cid == ref.cname2cid and len(ours.roidbs) == len(ref.roidbs)
    for a, b in zip(ours.roidbs, ref.roidbs):
        for key in ("im_file", "im_id", "h", "w", "gt_bbox", "gt_class", "difficult"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_voc_unknown_class(tmp_path):
    kw = _voc(tmp_path, extra_obj="<object><name>zebra</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
                                  "<xmax>9</xmax><ymax>9</ymax></bndbox></object>")
    with pytest.raises(DatasetError, match=r"b\.xml.*'zebra'.*\['cat', 'dog'\]"):
        VOCDataSet(**kw).parse_dataset()


def test_image_folder(tmp_path):
    _write_images(str(tmp_path / "imgs" / "sub"), ["x.png", "y.jpg"])
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    ds = ImageFolder(dataset_dir=str(tmp_path), anno_path="labels.txt")
    ds.set_images([str(tmp_path / "imgs")])
    assert [os.path.basename(r["im_file"]) for r in ds.roidbs] == ["x.png", "y.jpg"]
    assert ds.get_imid2path()[1].endswith("y.jpg") and ds.roidbs[1]["im_id"].tolist() == [1]
    assert ds.get_label_list() == ["cat", "dog"]
    kw = _coco(tmp_path)
    assert ImageFolder(dataset_dir=kw["dataset_dir"], anno_path="ann.json").get_label_list() == ["a", "b", "c"]
    with pytest.raises(DatasetError, match="no image"):
        ImageFolder().set_images([str(tmp_path / "imgs" / "notes.txt")])


def test_image_folder_paddledetection_keys_load_only_at_their_no_op_value(tmp_path):
    from ppdet_lite.core.errors import ConfigError
    from ppdet_lite.core.registry import create

    ds = create("ImageFolder", {"anno_path": "labels.txt", "data_fields": ["image"],
                                "use_default_label": False}, where="c.yml: TestDataset")
    assert ds.anno_path == "labels.txt" and ds.data_fields == ["image"]
    with pytest.raises(ConfigError, match=r"^c\.yml: TestDataset: ImageFolder: data_fields: \['image', "
                                          r"'gt_bbox'\]: ppdet_lite does not implement data_fields"):
        create("ImageFolder", {"data_fields": ["image", "gt_bbox"]}, where="c.yml: TestDataset")
    with pytest.raises(ConfigError, match=r"use_default_label: True: ppdet_lite does not implement"):
        create("ImageFolder", {"use_default_label": True}, where="c.yml: TestDataset")
    with pytest.raises(TypeError):  # no longer a constructor argument
        ImageFolder(data_fields=["image", "gt_bbox"])

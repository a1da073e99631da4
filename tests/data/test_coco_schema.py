"""COCO files with schema errors fail naming the entry and the field; silent drops are counted."""
import json
import logging

import cv2
import numpy as np
import pytest

from ppdet_lite.core.errors import DatasetError
from ppdet_lite.data import COCODataSet


def write(tmp_path, images=None, annotations=None, categories=None, image_files=("a.jpg", "b.jpg")):
    (tmp_path / "img").mkdir(exist_ok=True)
    for name in image_files:
        cv2.imwrite(str(tmp_path / "img" / name), np.zeros((20, 30, 3), np.uint8))
    data = {"images": images if images is not None else
            [{"id": 1, "file_name": "a.jpg", "width": 30, "height": 20},
             {"id": 2, "file_name": "b.jpg", "width": 30, "height": 20}],
            "annotations": annotations if annotations is not None else
            [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}],
            "categories": categories if categories is not None else [{"id": 7, "name": "thing"}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    ds = COCODataSet(dataset_dir=str(tmp_path), image_dir="img", anno_path="ann.json",
                     data_fields=["image", "gt_bbox", "gt_class", "is_crowd"])
    return ds


ANN = {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}


@pytest.mark.parametrize("change, message", [
    (dict(annotations=[{k: v for k, v in ANN.items() if k != "category_id"}]),
     r"annotations\[0\] \(id 1\) has no 'category_id'"),
    (dict(annotations=[{k: v for k, v in ANN.items() if k != "image_id"}]),
     r"annotations\[0\] \(id 1\) has no 'image_id'"),
    (dict(images=[{"id": 1, "width": 30, "height": 20}]), r"images\[0\] \(id 1\) has no 'file_name'"),
    (dict(annotations=[dict(ANN, bbox=[1, 1, 10])]), r"annotations\[0\] \(id 1\): bbox \[1, 1, 10\] must be "
                                                     r"a list of 4 numbers"),
    (dict(images=[{"id": "one", "file_name": "a.jpg", "width": 30, "height": 20}]),
     r"images\[0\] \(id 'one'\): id 'one' must be an integer id"),
    (dict(annotations=[dict(ANN, image_id="1")]), r"annotations\[0\] \(id 1\): image_id '1' must be an integer"),
    (dict(categories=[{"id": "7", "name": "thing"}]), r"categories\[0\] \(id '7'\): id '7' must be an integer"),
    (dict(annotations={"id": 1}), r"'annotations' must be a list"),
])
def test_schema_errors_name_the_entry_and_field(tmp_path, change, message):
    ds = write(tmp_path, **change)
    with pytest.raises(DatasetError, match=r"ann\.json: " + message):
        ds.parse_dataset()


def test_every_box_invalid_blames_the_boxes_not_image_dir(tmp_path):
    ds = write(tmp_path, annotations=[dict(ANN, bbox=[50, 50, 10, 10])])
    with pytest.raises(DatasetError, match="2 images exist but none has a valid box") as err:
        ds.parse_dataset()
    assert "image_dir" not in str(err.value)


def test_missing_files_blame_image_dir(tmp_path):
    ds = write(tmp_path, image_files=())
    with pytest.raises(DatasetError, match="none of its 2 file_name entries exists under image_dir"):
        ds.parse_dataset()


def test_duplicate_image_ids_and_orphan_annotations_are_counted(tmp_path, caplog):
    images = [{"id": 1, "file_name": "a.jpg", "width": 30, "height": 20},
              {"id": 1, "file_name": "b.jpg", "width": 30, "height": 20}]
    ds = write(tmp_path, images=images, annotations=[ANN, dict(ANN, id=2, image_id=9)])
    logger = logging.getLogger("ppdet_lite")
    logger.addHandler(caplog.handler)
    try:
        ds.parse_dataset()
    finally:
        logger.removeHandler(caplog.handler)
    assert "1 duplicate image ids (the first entry of each kept) and 1 annotations of image ids not in " \
           "'images'" in caplog.text
    assert [r["im_file"].endswith("a.jpg") for r in ds.roidbs] == [True]

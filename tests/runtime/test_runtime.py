"""ppdet_lite.runtime: paddle-free imports, the one IoU, image reading/listing, the result record
and its threshold rule."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ppdet_lite.core.errors import DatasetError
from ppdet_lite.runtime.boxes import box_iou
from ppdet_lite.runtime.images import list_images, read_image
from ppdet_lite.runtime.result import Detections, keep_rows, split_detections


def test_runtime_imports_no_paddle():
    code = ("import sys\nimport ppdet_lite.runtime.preprocess, ppdet_lite.runtime.result, "
            "ppdet_lite.runtime.boxes, ppdet_lite.runtime.images, ppdet_lite.runtime.lite\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('paddle', 'paddlelite'))\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr


def test_box_iou_conventions():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 5, 15, 15], [10, 0, 20, 10], [0, 0, 10, 10], [20, 20, 20, 20]], np.float32)
    iou = box_iou(a, b)
    assert iou.dtype == np.float32
    np.testing.assert_allclose(iou[0], [25 / 175, 0, 1, 0], rtol=1e-6)
    # VOC pixel rule: +1 per side; touching boxes (x2 == x1) still do not overlap
    iou = box_iou(a.astype(np.float64), b.astype(np.float64), pixel_offset=1.0)
    np.testing.assert_allclose(iou[0], [36 / (121 + 121 - 36), 0, 1, 0])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 4)


def test_read_image_sources_and_errors(tmp_path):
    rgb = np.random.RandomState(0).randint(0, 255, (20, 30, 3), np.uint8)
    path = str(tmp_path / "ä.png")  # a non-ASCII path decodes too
    cv2.imwrite(str(tmp_path / "x.png"), rgb[:, :, ::-1])
    os.rename(tmp_path / "x.png", path)
    np.testing.assert_array_equal(read_image(path), rgb)
    np.testing.assert_array_equal(read_image(open(path, "rb").read()), rgb)
    assert read_image(rgb) is rgb
    with pytest.raises(DatasetError, match="missing.jpg: file not found"):
        read_image(str(tmp_path / "missing.jpg"))
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.jpg: cannot be decoded"):
        read_image(str(tmp_path / "bad.jpg"))
    with pytest.raises(DatasetError, match="cannot decode image bytes"):
        read_image(b"")
    with pytest.raises(DatasetError, match=r"shape \(20, 30\)"):
        read_image(rgb[..., 0])
    whole = cv2.imencode(".jpg", cv2.resize(rgb, (300, 200)))[1].tobytes()
    cut = whole[:len(whole) // 2]  # OpenCV decodes it, the missing rows grey; read_image refuses it
    (tmp_path / "cut.jpg").write_bytes(cut)
    assert cv2.imdecode(np.frombuffer(cut, np.uint8), cv2.IMREAD_COLOR) is not None
    with pytest.raises(DatasetError, match="cut.jpg: a truncated JPEG"):
        read_image(str(tmp_path / "cut.jpg"))
    with pytest.raises(DatasetError, match="image bytes: a truncated JPEG"):
        read_image(cut)
    assert read_image(whole).shape == (200, 300, 3)


def test_list_images(tmp_path):
    for name in ["b.JPG", "a.png", "notes.txt", "sub/c.bmp"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    d = str(tmp_path)
    assert list_images(d) == [os.path.join(d, "a.png"), os.path.join(d, "b.JPG")]
    assert list_images(d, recursive=True) == [os.path.join(d, "a.png"), os.path.join(d, "b.JPG"),
                                              os.path.join(d, "sub", "c.bmp")]
    assert list_images(os.path.join(d, "notes.txt")) == []
    with pytest.raises(FileNotFoundError, match="nope"):
        list_images(os.path.join(d, "nope"))


def test_detections_record_and_threshold_rule():
    bbox = np.array([[2, 0.5, 1, 2, 3, 4], [7, 0.3, 0, 0, 5, 5],      # image 0
                     [0, 0.0, 0, 0, 1, 1],                            # image 1: padding row
                     [-1, 0.0, 0, 0, 0, 0], [1, 0.9, 1, 1, 2, 2]],    # image 2
                    np.float32)
    np.testing.assert_array_equal(keep_rows(bbox, 0.0), [True, True, False, False, True])
    np.testing.assert_array_equal(keep_rows(bbox, 0.5), [True, False, False, False, True])
    dets = split_detections(bbox, [2, 1, 2], 0.3, ["a", "b", "c"])
    assert [len(d.scores) for d in dets] == [2, 0, 1]
    d = dets[0]
    np.testing.assert_array_equal(d.rows(), bbox[:2])
    assert d.class_names == ["c", "7"] and d.class_ids.dtype == np.int64
    assert set(d) == {"boxes", "scores", "class_ids", "class_names"} and d["boxes"] is d.boxes
    assert d.to_json() == {"boxes": [[1, 2, 3, 4], [0, 0, 5, 5]], "scores": [0.5, pytest.approx(0.3)],
                           "class_ids": [2, 7], "class_names": ["c", "7"]}
    assert d.coco_records(4, "x.jpg")[0] == {"image_id": 4, "category_id": 2, "file_name": "x.jpg",
                                            "bbox": [1, 2, 2, 2], "score": 0.5}
    assert Detections.from_rows(np.zeros((0, 6)), []).rows().shape == (0, 6)

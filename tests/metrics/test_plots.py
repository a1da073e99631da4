"""--classwise extras: confusion-matrix counts, per-class table, PR-curve and matrix PNGs."""
import json

import cv2
import numpy as np
import pytest

from ppdet_lite.metrics.coco_metric import coco_eval
from ppdet_lite.metrics.plots import (ConfusionMatrix, classwise_report, coco_classwise,
                                      confusion_from_cocoeval, format_table, plot_pr_curve)
from ppdet_lite.metrics.voc_metric import VOCMetric


def test_confusion_matrix_hand_built():
    cm = ConfusionMatrix(3, iou_thresh=0.5, score_thresh=0.25)
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]], float)
    pred = np.array([[0, 0.9, 0, 0, 10, 10],        # box 0 (class 0) as class 0
                     [2, 0.8, 20, 20, 30, 30],      # box 1 (class 1) as class 2
                     [1, 0.9, 0, 0, 10, 11],        # box 0 again, lower IoU: a false detection
                     [0, 0.1, 60, 60, 70, 70],      # under the score threshold: box 3 is missed
                     [2, 0.5, 100, 100, 110, 110]])  # nothing there: a false detection
    cm.update(pred, gt, [0, 1, 2, 0])
    # image 2: a detection on an ignored (crowd/difficult) box counts nowhere; the other box is missed
    cm.update(np.array([[1, 0.9, 0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), [1, 1],
              ignore=[True, False])
    cm.update(np.zeros((0, 6)), np.zeros((0, 4)), [])  # an empty image changes nothing
    np.testing.assert_array_equal(cm.matrix, [[1, 0, 0, 1],
                                              [0, 0, 1, 1],
                                              [0, 0, 0, 1],
                                              [0, 1, 1, 0]])
    text = cm.table(["a", "b", "c"])
    assert "background" in text and len(text.splitlines()) == 8


def test_format_table_and_pr_png(tmp_path):
    text = format_table(["category", "AP"], [("cat", 0.5), ("dog", float("nan"))])
    assert "| cat      | 0.500 |" in text and "nan" in text
    path = plot_pr_curve(np.linspace(0, 1, 11), np.linspace(1, 0, 11), str(tmp_path / "pr.png"), "x")
    im = cv2.imread(path)
    assert im.shape == (480, 640, 3) and (im < 128).any() and im.mean() > 200


def _tiny_coco(tmp_path):
    """2 categories, 3 images; detections: cats found, one dog labelled cat, one dog missed."""
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 100, "width": 100} for i in (1, 2, 3)]
    boxes = {1: [(1, [10, 10, 30, 30]), (2, [50, 50, 40, 40])], 2: [(1, [0, 0, 50, 50])],
             3: [(2, [20, 20, 30, 30])]}
    annos = [{"id": k + 1, "image_id": im, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
             for k, (im, c, b) in enumerate((im, c, b) for im, bs in boxes.items() for c, b in bs)]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"info": {}, "images": images, "annotations": annos,
                                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [50, 50, 40, 40], "score": 0.65},  # a dog as cat
            {"image_id": 2, "category_id": 1, "bbox": [1, 1, 50, 50], "score": 0.7},
            {"image_id": 3, "category_id": 2, "bbox": [70, 70, 20, 20], "score": 0.6}]  # misses the dog
    return str(path), dets


def test_classwise_report_from_cocoeval(tmp_path):
    anno, dets = _tiny_coco(tmp_path)
    stats = coco_eval(dets, anno)
    ev = stats["_eval"]
    names = {1: "cat", 2: "dog"}
    rows = coco_classwise(ev, names)
    assert [r[0] for r in rows] == ["cat", "dog"]
    assert rows[0][2] == pytest.approx(1.0, abs=1e-6)  # AP50 cat: both cats found first
    assert rows[1][2] == pytest.approx(0.0, abs=1e-6)  # AP50 dog: nothing right
    text = classwise_report(ev, str(tmp_path / "out"), names)
    assert "cat" in text and "dog" in text and "background" in text
    for name in ("cat", "dog"):
        im = cv2.imread(str(tmp_path / "out" / "pr_curve" / f"{name}_precision_recall_curve.png"))
        assert im is not None and im.shape == (480, 640, 3)
    cm_png = cv2.imread(str(tmp_path / "out" / "confusion_matrix.png"))
    assert cm_png is not None and cm_png.shape[0] > 100 and cm_png.shape[1] > 100
    # rows: cat, dog, background; columns: cat, dog, background
    cm = confusion_from_cocoeval(ev)
    np.testing.assert_array_equal(cm.matrix, [[2, 0, 0], [1, 0, 1], [0, 1, 0]])
    assert cm.table(["cat", "dog"]) in text


def test_classwise_report_from_voc_metric(tmp_path):
    records = [{"im_id": np.array([0]), "gt_bbox": np.array([[0, 0, 9, 9], [20, 20, 39, 39]], np.float32),
                "gt_class": np.array([[0], [1]], np.int32)}]
    metric = VOCMetric(2, ["a", "b"], records=records, classwise=True)
    metric.update({"bbox": np.array([[0, 0.9, 0, 0, 9, 9], [0, 0.8, 20, 20, 39, 39]]),
                   "bbox_num": np.array([2])}, np.array([0]))
    res = metric.accumulate()
    assert res["per_class"] == {"a": 1.0, "b": 0.0}
    text = classwise_report(res["_eval"], str(tmp_path))
    assert "11point" in text
    assert (tmp_path / "pr_curve" / "a_precision_recall_curve.png").is_file()
    np.testing.assert_array_equal(metric.confusion.matrix, [[1, 0, 0], [1, 0, 0], [0, 0, 0]])
    assert cv2.imread(str(tmp_path / "confusion_matrix.png")) is not None

"""VOC mAP: a hand-checked case, and parity with PaddleDetection 2.6.0's DetectionMAP / VOCMetric."""

import numpy as np
import pytest

from ppdet_lite.metrics.voc_metric import VOCMetric, average_precision, match_image, pairwise_iou


def test_pairwise_iou_pixel_convention():
    a = np.array([[0, 0, 9, 9]], float)  # 10 x 10 pixels
    b = np.array([[5, 0, 14, 9], [8, 0, 20, 9], [9, 0, 20, 9]], float)  # the last one only touches
    iou = pairwise_iou(a, b)
    np.testing.assert_allclose(iou[0], [50 / 150, 20 / (100 + 130 - 20), 0.0])
    np.testing.assert_allclose(pairwise_iou(a / 10, b / 10, normalized=True)[0, 0], 0.36 / 1.26)


def test_match_image_order_difficult_and_duplicates():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], float)
    gt_cls = np.array([0, 0, 1])
    diff = np.array([0, 1, 0])
    pred = np.array([[0, 0, 10, 10],      # TP on box 0
                     [1, 1, 10, 10],      # duplicate of box 0: FP
                     [20, 20, 30, 30],    # matches the difficult box: ignored
                     [40, 40, 50, 50],    # right place, wrong class (0): FP
                     [60, 60, 70, 70]],   # nothing: FP
                    float)
    out = match_image(pred, [0, 0, 0, 0, 0], gt, gt_cls, diff)
    np.testing.assert_array_equal(out, [1, 0, -1, 0, 0])


def test_hand_checked_map():
    """One class, 3 boxes (one difficult), 4 detections; AP worked out by hand."""
    records = [{"im_id": np.array([1]), "gt_bbox": np.array([[0, 0, 9, 9], [20, 20, 29, 29]], np.float32),
                "gt_class": np.array([[0], [0]], np.int32), "difficult": np.array([[0], [0]], np.int32)},
               {"im_id": np.array([2]), "gt_bbox": np.array([[0, 0, 9, 9]], np.float32),
                "gt_class": np.array([[0]], np.int32), "difficult": np.array([[1]], np.int32)}]
    bbox = np.array([[0, 0.9, 0, 0, 9, 9],       # TP
                     [0, 0.8, 50, 50, 59, 59],   # FP
                     [0, 0.7, 20, 20, 29, 29],   # TP
                     [0, 0.95, 0, 0, 9, 9]],     # image 2: the difficult box -> ignored
                    np.float32)
    out = {"bbox": bbox, "bbox_num": np.array([3, 1])}
    # sorted: TP (p 1, r .5), FP (p .5, r .5), TP (p 2/3, r 1)
    for map_type, expected in (("11point", (6 * 1.0 + 5 * (2 / 3)) / 11),
                               ("integral", 1.0 * 0.5 + (2 / 3) * 0.5)):
        metric = VOCMetric(1, ["thing"], records=records, map_type=map_type, classwise=True)
        metric.update(out, np.array([[1], [2]]))
        res = metric.accumulate()
        assert res["AP"] == pytest.approx(expected, abs=1e-12)
        assert res["per_class"] == {"thing": pytest.approx(expected, abs=1e-12)}
        assert metric.gt_counts.tolist() == [2]
    recall, precision = metric.pr_curves()["thing"]
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3])


def test_class_without_detections_scores_zero_and_no_gt_is_skipped():
    assert average_precision(np.zeros(0), 3)[0] == 0.0
    records = [{"im_id": np.array([0]), "gt_bbox": np.array([[0, 0, 9, 9], [0, 0, 5, 5]], np.float32),
                "gt_class": np.array([[0], [1]], np.int32)}]
    metric = VOCMetric(3, records=records)
    # class 0 found, class 1 missed, class 2 (no ground truth) only has false positives: skipped
    metric.update({"bbox": np.array([[0, 0.5, 0, 0, 9, 9], [2, 0.9, 30, 30, 40, 40]]),
                   "bbox_num": np.array([2])}, np.array([0]))
    assert metric.accumulate()["AP"] == pytest.approx(0.5)


def _random_images(rng, n_images, num_classes, with_difficult=True):
    """Random ground truth and detections (jittered copies, duplicates, clutter, tied scores)."""
    images = []
    for _ in range(n_images):
        g = rng.randint(1, 7)
        xy = rng.uniform(0, 200, (g, 2))
        gt = np.concatenate([xy, xy + rng.uniform(8, 80, (g, 2))], 1).round(1).astype(np.float32)
        gcls = rng.randint(0, num_classes, g)
        diff = (rng.rand(g) < 0.2).astype(np.int32) if with_difficult else np.zeros(g, np.int32)
        k = rng.randint(0, 3 * g + 2)
        src = rng.randint(0, g, k)
        det = gt[src] + rng.normal(0, 6, (k, 4)).astype(np.float32)
        clutter = rng.rand(k) < 0.25
        det[clutter] = np.concatenate([xy[0] + 100, xy[0] + 140])
        dcls = np.where(rng.rand(k) < 0.8, gcls[src], rng.randint(0, num_classes, k))
        score = rng.choice(np.linspace(0.05, 1, 12), k).astype(np.float32)  # many ties
        images.append((np.concatenate([dcls[:, None], score[:, None], det], 1).astype(np.float32),
                       gt, gcls, diff))
    return images


@pytest.mark.parametrize("map_type", ["11point", "integral"])
@pytest.mark.parametrize("evaluate_difficult", [False, True])
def test_parity_with_paddledetection_detection_map(map_type, evaluate_difficult):
    pytest.importorskip("ppdet", reason="PaddleDetection 2.6.0 is the parity oracle; "
                                        "pip install --no-deps paddledet==2.6.0")
    from ppdet.metrics.map_utils import DetectionMAP

    nc = 5
    rng = np.random.RandomState(1 if evaluate_difficult else 0)
    images = _random_images(rng, 60, nc)
    ref = DetectionMAP(nc, map_type=map_type, evaluate_difficult=evaluate_difficult,
                       catid2name={i: str(i) for i in range(nc)})
    records = [{"im_id": np.array([i]), "gt_bbox": gt, "gt_class": gcls[:, None].astype(np.int32),
                "difficult": diff[:, None]} for i, (_, gt, gcls, diff) in enumerate(images)]
    ours = VOCMetric(nc, records=records, map_type=map_type, evaluate_difficult=evaluate_difficult)
    for i, (det, gt, gcls, diff) in enumerate(images):
        ref.update(det[:, 2:], det[:, 1], det[:, 0], gt, gcls[:, None],
                   None if evaluate_difficult else diff[:, None])
        ours.update({"bbox": det, "bbox_num": np.array([len(det)])}, np.array([i]))
    ref.accumulate()
    res = ours.accumulate()
    assert res["AP"] == pytest.approx(ref.get_map(), abs=1e-6)
    assert 0.05 < res["AP"] < 0.95  # a non-trivial case
    np.testing.assert_allclose([r["ap"] for r in ours.eval_results],
                               [r["ap"] for r in ref.eval_results], atol=1e-6)


def test_batch_mode_parity_with_paddledetection_voc_metric(tmp_path):
    """update(outputs, batch): PadBox-padded gt in network pixels, divided by scale_factor."""
    pytest.importorskip("ppdet", reason="PaddleDetection 2.6.0 is the parity oracle")
    from ppdet.metrics import VOCMetric as RefVOCMetric

    nc = 4
    labels = tmp_path / "label_list.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(nc)))
    ref = RefVOCMetric(str(labels), class_num=nc, map_type="integral")
    ours = VOCMetric(nc, [f"c{i}" for i in range(nc)], map_type="integral", output_eval=str(tmp_path))
    rng = np.random.RandomState(3)
    images = _random_images(rng, 24, nc)
    for start in range(0, len(images), 4):
        chunk = images[start:start + 4]
        scale = rng.uniform(0.5, 2.0, (len(chunk), 2)).astype(np.float32)
        pad = np.zeros((len(chunk), 8, 4), np.float32)
        cls = np.zeros((len(chunk), 8, 1), np.int32)
        diff = np.zeros((len(chunk), 8, 1), np.int32)
        for i, (_, gt, gcls, d) in enumerate(chunk):
            sy, sx = scale[i]
            pad[i, :len(gt)] = gt * np.array([sx, sy, sx, sy], np.float32)
            cls[i, :len(gt), 0], diff[i, :len(gt), 0] = gcls, d
        batch = {"gt_bbox": pad, "gt_class": cls, "difficult": diff, "scale_factor": scale,
                 "im_id": np.arange(start, start + len(chunk))[:, None]}
        out = {"bbox": np.concatenate([c[0] for c in chunk]),
               "bbox_num": np.array([len(c[0]) for c in chunk])}
        ref.update(batch, out)
        ours.update(out, batch)
    ref.accumulate()
    assert ours.accumulate()["AP"] == pytest.approx(ref.get_results()["bbox"][0], abs=1e-6)
    assert (tmp_path / "bbox.json").is_file()

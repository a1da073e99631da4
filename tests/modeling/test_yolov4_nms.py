"""DIoUNMS (darknet's greedynms / diounms) vs a plain numpy reference written from darknet's
description: per class, score order, a kept box drops later ones with IoU − (ρ²/c²)^β > t."""

import numpy as np
import paddle
import pytest

from ppdet_lite.core.registry import lookup
from ppdet_lite.modeling.diou_nms import DIoUNMS


def _criterion(a, b, beta):
    iw = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    iou = inter / union if union > 0 else 0.
    c2 = (max(a[2], b[2]) - min(a[0], b[0])) ** 2 + (max(a[3], b[3]) - min(a[1], b[1])) ** 2
    if c2 == 0:
        return iou
    rho2 = (((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2) ** 2
            + ((a[1] + a[3]) / 2 - (b[1] + b[3]) / 2) ** 2)
    return iou - (rho2 / c2) ** beta


def _reference(boxes, scores, thr, beta, score_thr):
    """[M,4], [nc,M] → rows (class, score, box) score-descending."""
    rows = []
    for c in range(scores.shape[0]):
        cand = [i for i in np.argsort(-scores[c], kind="stable") if scores[c, i] > score_thr]
        alive = [True] * len(cand)
        for a in range(len(cand)):
            if not alive[a]:
                continue
            rows.append([c, scores[c, cand[a]], *boxes[cand[a]]])
            for b in range(a + 1, len(cand)):
                if alive[b] and _criterion(boxes[cand[a]], boxes[cand[b]], beta) > thr:
                    alive[b] = False
    rows.sort(key=lambda r: -r[1])
    return np.array(rows, dtype="float32").reshape(-1, 6)


def _random_case(seed, n_img=2, m=60, nc=3):
    rng = np.random.RandomState(seed)
    xy = rng.uniform(0, 80, (n_img, m, 2))
    wh = rng.uniform(5, 40, (n_img, m, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype("float32")
    scores = rng.uniform(0, 1, (n_img, nc, m)).astype("float32")
    return boxes, scores


@pytest.mark.parametrize("seed,beta,thr", [(0, 0.6, 0.45), (1, 0.6, 0.3), (2, 1.0, 0.45),
                                           (3, 0.6, 0.15)])
def test_matches_numpy_reference(seed, beta, thr):
    boxes, scores = _random_case(seed)
    nms = DIoUNMS(score_threshold=0.3, nms_threshold=thr, beta_nms=beta, nms_top_k=-1,
                  keep_top_k=-1)
    out, num, _ = nms(paddle.to_tensor(boxes), paddle.to_tensor(scores))
    out, num = out.numpy(), num.numpy()
    start = 0
    for b in range(boxes.shape[0]):
        ref = _reference(boxes[b], scores[b], thr, beta, 0.3)
        assert num[b] == len(ref) and 0 < len(ref) < (scores[b] > 0.3).sum()
        np.testing.assert_allclose(out[start:start + num[b]], ref, rtol=1e-6, atol=1e-5)
        start += num[b]


def test_diou_keeps_what_iou_nms_drops():
    # same size, centres 3.5 apart: IoU 0.48 > 0.45 but IoU − (ρ²/c²)^0.6 = 0.33 < 0.45
    boxes = np.array([[[0, 0, 10, 10], [3.5, 0, 13.5, 10]]], "float32")
    scores = np.array([[[0.9, 0.8]]], "float32")
    a, b = boxes[0]
    assert _criterion(a, b, 0.6) < 0.45 < _criterion(a, b, 1e9)
    out, num, _ = DIoUNMS(nms_threshold=0.45)(paddle.to_tensor(boxes), paddle.to_tensor(scores))
    assert num.numpy().tolist() == [2]
    out, num, _ = DIoUNMS(nms_threshold=0.3)(paddle.to_tensor(boxes), paddle.to_tensor(scores))
    assert num.numpy().tolist() == [1] and out.numpy()[0, 1] == pytest.approx(0.9)


def test_top_k_and_registered():
    boxes, scores = _random_case(5)
    out, num, _ = DIoUNMS(score_threshold=0.1, keep_top_k=7)(paddle.to_tensor(boxes),
                                                             paddle.to_tensor(scores))
    assert num.numpy().tolist() == [7, 7]
    assert np.all(np.diff(out.numpy()[:7, 1]) <= 0)
    assert lookup("DIoUNMS") is DIoUNMS

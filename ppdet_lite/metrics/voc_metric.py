"""PascalVOC mAP (IoU 0.5, difficult boxes ignored), as PaddleDetection's ``VOCMetric`` computes it.

Semantics kept from PaddleDetection (``ppdet/metrics/map_utils.py``):

- a detection is matched, in the order the model emitted it, to the ground-truth box of its class
  with the highest IoU; it is a TP when that IoU is ``> overlap_thresh`` and the box is not taken
  yet, a FP otherwise; when that box is ``difficult`` (and ``evaluate_difficult`` is off) the
  detection is ignored;
- pixel boxes use the legacy ``+1`` area convention (``is_bbox_normalized`` turns it off);
- per class, detections are sorted by score (ties keep emission order); classes with no
  ground truth are skipped, classes with ground truth but no detection score 0;
- ``11point``: mean over recall 0, 0.1, ..., 1 of the best precision at recall >= t;
  ``integral``: sum of precision x recall step (no precision envelope).

Ground truth comes either from the dataset records given at construction (``update(outputs,
im_ids)``, like ``COCOMetric`` reads its json) or from the batch (``update(outputs, batch)`` with
``gt_bbox``, ``gt_class``, ``difficult``, ``scale_factor``, as PaddleDetection does).
"""
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..core.errors import DatasetError
from ..utils.logger import get_logger
from ..runtime.boxes import box_iou
from .plots import ConfusionMatrix

logger = get_logger(__name__)


def pairwise_iou(a: np.ndarray, b: np.ndarray, normalized: bool = False) -> np.ndarray:
    """IoU [P,G] of xyxy boxes (VOC rule: pixel boxes count ``+1`` per side; boxes that do not
    strictly overlap get 0): ``runtime.boxes.box_iou`` in float64."""
    return box_iou(np.asarray(a, np.float64), np.asarray(b, np.float64), pixel_offset=0.0 if normalized else 1.0)


def match_image(pred_box: np.ndarray, pred_cls: np.ndarray, gt_box: np.ndarray,
                gt_cls: np.ndarray, difficult: Optional[np.ndarray] = None,
                overlap_thresh: float = 0.5, normalized: bool = False) -> np.ndarray:
    """Greedy VOC matching of one image's detections, in their given order.

    pred_box [P,4], pred_cls [P], gt_box [G,4], gt_cls [G], difficult [G] -> int8 [P]:
    1 TP, 0 FP, -1 ignored (best match is a difficult box)."""
    pred_cls = np.asarray(pred_cls).reshape(-1).astype(np.int64)
    gt_cls = np.asarray(gt_cls).reshape(-1).astype(np.int64)
    out = np.zeros(len(pred_cls), np.int8)
    if len(pred_cls) == 0 or len(gt_cls) == 0:
        return out
    iou = pairwise_iou(pred_box, gt_box, normalized)
    iou = np.where(pred_cls[:, None] == gt_cls[None, :], iou, -1.0)
    best = iou.argmax(1)  # first of equal maxima, like a strict '>' scan
    hit = iou[np.arange(len(best)), best] > overlap_thresh
    hard = np.zeros(len(gt_cls), bool) if difficult is None else \
        np.asarray(difficult).reshape(-1).astype(bool)
    out[hit & hard[best]] = -1
    easy = np.flatnonzero(hit & ~hard[best])
    _, first = np.unique(best[easy], return_index=True)  # the first claim of each box wins
    out[easy[first]] = 1
    return out


def average_precision(tp: np.ndarray, n_gt: int, map_type: str = "11point"
                      ) -> Tuple[float, np.ndarray, np.ndarray]:
    """AP of one class from tp flags [P] sorted by descending score; returns (ap, precision, recall)."""
    tp = np.asarray(tp, np.float64)
    ctp = np.cumsum(tp)
    precision = ctp / np.arange(1, len(tp) + 1)
    recall = ctp / n_gt
    if len(tp) == 0:
        return 0.0, precision, recall
    if map_type == "11point":
        envelope = np.append(np.maximum.accumulate(precision[::-1])[::-1], 0.0)
        first = np.searchsorted(recall, np.arange(11) / 10.0, side="left")  # first recall >= t
        return float(envelope[first].sum() / 11.0), precision, recall
    if map_type == "integral":
        step = np.diff(recall, prepend=0.0)
        return float(np.sum(np.where(step > 1e-6, precision * step, 0.0))), precision, recall
    raise ValueError(f"map_type must be '11point' or 'integral', got {map_type!r}")


def _valid_rows(bbox: np.ndarray) -> np.ndarray:
    """Drop the placeholder row a model emits for an image without detections (score 0)."""
    return bbox[(bbox[:, 0] >= 0) & (bbox[:, 1] > 0)]


def _unpad(gt_box: np.ndarray) -> int:
    """Boxes before the first all-zero row (PadBox padding)."""
    zero = np.flatnonzero((gt_box == 0).all(1))
    return int(zero[0]) if len(zero) else len(gt_box)


class VOCMetric:
    """Collects detections per image, then computes VOC mAP. ``accumulate()`` -> ``{'AP': mAP,
    'AP50': mAP, 'per_class': {name: AP} (classwise), '_eval': self}``.

    ``records``: the eval dataset's ``roidbs`` (``im_id``, ``gt_bbox`` xyxy pixels, ``gt_class``,
    optional ``difficult``); needed for ``update(outputs, im_ids)``."""

    def __init__(self, class_num: int, label_list: Optional[Sequence[str]] = None,
                 records: Optional[List[dict]] = None, overlap_thresh: float = 0.5,
                 map_type: str = "11point", is_bbox_normalized: bool = False,
                 evaluate_difficult: bool = False, classwise: bool = False,
                 output_eval: Optional[str] = None, confusion_score_thresh: float = 0.25):
        if map_type not in ("11point", "integral"):
            raise ValueError(f"map_type must be '11point' or 'integral', got {map_type!r}")
        self.class_num, self.overlap_thresh, self.map_type = int(class_num), overlap_thresh, map_type
        self.names = list(label_list) if label_list else [str(i) for i in range(self.class_num)]
        self.normalized, self.evaluate_difficult = is_bbox_normalized, evaluate_difficult
        self.classwise, self.output_eval = classwise, output_eval
        self.confusion_score_thresh = confusion_score_thresh
        self._gt_by_id = self._index_records(records) if records is not None else None
        self.reset()

    @staticmethod
    def _index_records(records: List[dict]) -> Dict[int, dict]:
        index = {}
        for rec in records:
            if "gt_bbox" not in rec or "gt_class" not in rec:
                raise DatasetError("VOCMetric needs gt_bbox and gt_class in the EvalDataset records: "
                                   "add them to EvalDataset.data_fields, e.g. "
                                   "['image', 'gt_bbox', 'gt_class', 'difficult']")
            im_id = int(np.asarray(rec["im_id"]).reshape(-1)[0])
            if im_id in index:
                raise DatasetError(f"VOCMetric: two EvalDataset images share im_id {im_id}; "
                                   "give each annotation a unique <id> or remove the <id> tags")
            index[im_id] = rec
        return index

    def reset(self) -> None:
        self.scores: List[np.ndarray] = []
        self.labels: List[np.ndarray] = []
        self.tp: List[np.ndarray] = []
        self.gt_counts = np.zeros(self.class_num, np.int64)
        self.results: List[dict] = []
        self.confusion = ConfusionMatrix(self.class_num, self.overlap_thresh, self.confusion_score_thresh)
        self.eval_results: List[dict] = []

    # ------------------------------------------------------------------ collecting
    def _gts(self, batch_or_ids: Union[np.ndarray, Dict[str, Any]]):
        """Per image: (im_id, gt_box [G,4] original pixels, gt_cls [G], difficult [G] bool)."""
        if isinstance(batch_or_ids, dict):
            batch = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in batch_or_ids.items()}
            n = len(batch["gt_bbox"])
            scale = np.asarray(batch.get("scale_factor", np.ones((n, 2))), np.float64).reshape(n, 2)
            ids = np.asarray(batch.get("im_id", np.arange(n))).reshape(-1)
            for i in range(n):
                box = np.asarray(batch["gt_bbox"][i], np.float64).reshape(-1, 4)
                k = _unpad(box)
                sy, sx = scale[i]
                diff = batch.get("difficult")
                diff = np.zeros(k, bool) if diff is None or self.evaluate_difficult else \
                    np.asarray(diff[i]).reshape(-1)[:k].astype(bool)
                yield (int(ids[i]), box[:k] / np.array([sx, sy, sx, sy]),
                       np.asarray(batch["gt_class"][i]).reshape(-1)[:k], diff)
            return
        if self._gt_by_id is None:
            raise ValueError("VOCMetric.update(outputs, im_ids) needs records=dataset.roidbs at "
                             "construction; or pass the batch with its gt_* keys instead")
        for im_id in np.asarray(batch_or_ids).reshape(-1):
            rec = self._gt_by_id.get(int(im_id))
            if rec is None:
                raise DatasetError(f"VOCMetric: im_id {int(im_id)} is not in the EvalDataset records")
            box = np.asarray(rec["gt_bbox"], np.float64).reshape(-1, 4)
            diff = rec.get("difficult")
            diff = np.zeros(len(box), bool) if diff is None or self.evaluate_difficult else \
                np.asarray(diff).reshape(-1).astype(bool)
            yield int(im_id), box, np.asarray(rec["gt_class"]).reshape(-1), diff

    def update(self, outputs: Dict[str, np.ndarray], batch_or_ids) -> None:
        """outputs: ``bbox`` [M,6] (class, score, x1, y1, x2, y2 original pixels), ``bbox_num`` [N];
        then either im_ids [N] (ground truth from ``records``) or the batch dict."""
        bbox = np.asarray(outputs["bbox"], np.float64).reshape(-1, 6)
        nums = np.asarray(outputs["bbox_num"]).reshape(-1).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(nums)])
        for i, (im_id, gt_box, gt_cls, diff) in enumerate(self._gts(batch_or_ids)):
            rows = _valid_rows(bbox[starts[i]:starts[i + 1]])
            gt_cls = gt_cls.astype(np.int64)
            self.gt_counts += np.bincount(gt_cls[~diff], minlength=self.class_num)[:self.class_num]
            tp = match_image(rows[:, 2:], rows[:, 0], gt_box, gt_cls, diff, self.overlap_thresh,
                             self.normalized)
            keep = tp >= 0
            self.scores.append(rows[keep, 1])
            self.labels.append(rows[keep, 0].astype(np.int64))
            self.tp.append(tp[keep])
            self.confusion.update(rows, gt_box, gt_cls, ignore=diff)
            self.results += [{"image_id": im_id, "category_id": int(r[0]), "score": round(float(r[1]), 5),
                              "bbox": [round(float(v), 2) for v in r[2:]]} for r in rows]

    # ------------------------------------------------------------------ results
    def accumulate(self) -> Dict[str, Any]:
        if self.output_eval:
            os.makedirs(self.output_eval, exist_ok=True)
            path = os.path.join(self.output_eval, "bbox.json")
            with open(path, "w") as f:
                json.dump(self.results, f)
            logger.info(f"wrote {len(self.results)} detections (bbox x1,y1,x2,y2) to {path}")
        scores = np.concatenate(self.scores) if self.scores else np.zeros(0)
        labels = np.concatenate(self.labels) if self.labels else np.zeros(0, np.int64)
        tp = np.concatenate(self.tp) if self.tp else np.zeros(0, np.int8)
        order = np.argsort(-scores, kind="stable")
        scores, labels, tp = scores[order], labels[order], tp[order]
        self.eval_results = []
        for c in np.flatnonzero(self.gt_counts > 0):
            ap, precision, recall = average_precision(tp[labels == c], int(self.gt_counts[c]),
                                                      self.map_type)
            self.eval_results.append({"class": self.names[c], "class_id": int(c), "ap": ap,
                                      "precision": precision, "recall": recall})
        m_ap = float(np.mean([r["ap"] for r in self.eval_results])) if self.eval_results else 0.0
        logger.info(f"mAP({self.overlap_thresh:.2f}, {self.map_type}) = {100 * m_ap:.2f}%")
        stats: Dict[str, Any] = {"AP": m_ap, "AP50": m_ap}
        if self.classwise:
            stats["per_class"] = {r["class"]: r["ap"] for r in self.eval_results}
        stats["_eval"] = self
        return stats

    def pr_curves(self) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
        """Per class with ground truth: (recall [P], precision [P]) after ``accumulate()``."""
        return {r["class"]: (r["recall"], r["precision"]) for r in self.eval_results}

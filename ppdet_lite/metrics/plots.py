"""Evaluation extras for ``--classwise``: per-class AP table, PR-curve PNGs and a confusion matrix.

Works from an accumulated pycocotools ``COCOeval`` or from a ``VOCMetric``; drawing is plain
OpenCV (no matplotlib). ``classwise_report(eval_obj, out_dir)`` does all of it and returns the text.

Confusion matrix layout: rows = ground-truth class, columns = predicted class, each with a last
``background`` entry: row ``background`` counts false detections, column ``background`` counts
missed boxes. A detection (score >= ``score_thresh``) and a box may pair up when their IoU is
>= ``iou_thresh``, whatever their classes; pairs are one-to-one: each detection keeps its best box,
then each box its best detection (YOLOv5's rule).
"""
import os
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..runtime.boxes import box_iou

WHITE, BLACK, GREY, BLUE = (255, 255, 255), (0, 0, 0), (220, 220, 220), (200, 90, 20)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def format_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A plain aligned text table; floats printed with 3 decimals."""
    cells = [[f"{v:.3f}" if isinstance(v, (float, np.floating)) else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    fmt = lambda row: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                        for i, (c, w) in enumerate(zip(row, widths))) + " |"
    return "\n".join([line, fmt([str(h) for h in headers]), line, *map(fmt, cells), line])


# ---------------------------------------------------------------------------- confusion matrix
class ConfusionMatrix:
    """Counts [C+1, C+1] (rows ground truth, columns prediction, last = background)."""

    def __init__(self, num_classes: int, iou_thresh: float = 0.5, score_thresh: float = 0.25):
        self.num_classes, self.iou_thresh, self.score_thresh = int(num_classes), iou_thresh, score_thresh
        self.matrix = np.zeros((self.num_classes + 1,) * 2, np.int64)

    def update(self, pred: np.ndarray, gt_box: np.ndarray, gt_class: np.ndarray,
               ignore: Optional[np.ndarray] = None) -> None:
        """One image: pred [P,6] (class, score, x1, y1, x2, y2), gt_box [G,4], gt_class [G];
        ``ignore`` [G] bool (difficult / crowd): such boxes neither count as missed nor as hits."""
        pred = np.asarray(pred, np.float64).reshape(-1, 6)
        pred = pred[pred[:, 1] >= self.score_thresh]
        gt_class = np.asarray(gt_class).reshape(-1).astype(np.int64)
        ignore = np.zeros(len(gt_class), bool) if ignore is None else np.asarray(ignore, bool).reshape(-1)
        pcls, bg = pred[:, 0].astype(np.int64), self.num_classes
        iou = box_iou(np.asarray(gt_box, np.float64), np.asarray(pred[:, 2:], np.float64))
        gi, pi = np.nonzero(iou >= self.iou_thresh)
        if len(gi):
            order = np.argsort(-iou[gi, pi], kind="stable")
            gi, pi = gi[order], pi[order]
            keep = np.sort(np.unique(pi, return_index=True)[1])  # best box per detection
            gi, pi = gi[keep], pi[keep]
            keep = np.sort(np.unique(gi, return_index=True)[1])  # then best detection per box
            gi, pi = gi[keep], pi[keep]
        counted = ~ignore[gi]
        np.add.at(self.matrix, (gt_class[gi[counted]], pcls[pi[counted]]), 1)
        missed = np.ones(len(gt_class), bool)
        missed[gi] = False
        np.add.at(self.matrix, (gt_class[missed & ~ignore], bg), 1)
        false = np.ones(len(pcls), bool)
        false[pi] = False
        np.add.at(self.matrix, (bg, pcls[false]), 1)

    def table(self, names: Optional[Sequence[str]] = None) -> str:
        labels = list(names or range(self.num_classes)) + ["background"]
        rows = [[f"{lab}"] + row for lab, row in zip(labels, self.matrix.tolist())]
        return format_table(["true \\ pred"] + [str(n) for n in labels], rows)

    def plot(self, path: str, names: Optional[Sequence[str]] = None) -> str:
        """PNG heat map, colour = share of the row (cell counts written when cells are large)."""
        labels = [str(n) for n in (names or range(self.num_classes))] + ["background"]
        n = len(labels)
        cell = int(np.clip(900 // n, 14, 64))
        label_w = 12 + 8 * max(len(s) for s in labels)
        top, left = 60, label_w + 10
        h, w = top + n * cell + label_w + 10, max(left + n * cell + 20, 520)
        canvas = np.full((h, w, 3), 255, np.uint8)
        rows = self.matrix.sum(1, keepdims=True)
        share = np.divide(self.matrix, rows, out=np.zeros(self.matrix.shape), where=rows > 0)
        heat = cv2.applyColorMap((255 - share * 255).astype(np.uint8), cv2.COLORMAP_BONE)
        heat = cv2.resize(heat, (n * cell, n * cell), interpolation=cv2.INTER_NEAREST)
        canvas[top:top + n * cell, left:left + n * cell] = heat
        for i in range(n + 1):
            cv2.line(canvas, (left, top + i * cell), (left + n * cell, top + i * cell), GREY, 1)
            cv2.line(canvas, (left + i * cell, top), (left + i * cell, top + n * cell), GREY, 1)
        scale = 0.4 if cell >= 28 else 0.3
        for i, lab in enumerate(labels):
            cv2.putText(canvas, lab, (5, top + i * cell + cell // 2 + 4), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
            txt = np.full((cell, label_w, 3), 255, np.uint8)  # column label: written, then turned
            cv2.putText(txt, lab, (4, cell // 2 + 4), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
            col = cv2.rotate(txt, cv2.ROTATE_90_COUNTERCLOCKWISE)
            y0, x0 = top + n * cell + 5, left + i * cell
            canvas[y0:y0 + label_w, x0:x0 + cell] = col
            if cell >= 22:
                for j in range(n):
                    v = int(self.matrix[i, j])
                    colour = WHITE if share[i, j] > 0.5 else BLACK
                    tw = cv2.getTextSize(str(v), FONT, scale, 1)[0][0]
                    org = (left + j * cell + (cell - tw) // 2, top + i * cell + cell // 2 + 4)
                    cv2.putText(canvas, str(v), org, FONT, scale, colour, 1, cv2.LINE_AA)
        cv2.putText(canvas, "confusion matrix (rows: ground truth, columns: prediction)", (10, 25), FONT,
                    0.5, BLACK, 1, cv2.LINE_AA)
        cv2.putText(canvas, f"IoU >= {self.iou_thresh}, score >= {self.score_thresh}", (10, 45), FONT, 0.4,
                    BLACK, 1, cv2.LINE_AA)
        _write(path, canvas)
        return path


def confusion_from_cocoeval(ev, iou_thresh: float = 0.5, score_thresh: float = 0.25) -> ConfusionMatrix:
    """A ConfusionMatrix over every image of a (loaded) COCOeval; class index = rank of the
    category id in ``ev.params.catIds``; crowd boxes are ignored."""
    cat_ids = list(ev.params.catIds)
    index = {c: i for i, c in enumerate(cat_ids)}
    cm = ConfusionMatrix(len(cat_ids), iou_thresh, score_thresh)
    for img in ev.params.imgIds:
        gts = [a for a in ev.cocoGt.imgToAnns.get(img, []) if a["category_id"] in index]
        dts = [a for a in ev.cocoDt.imgToAnns.get(img, []) if a["category_id"] in index]
        gt_box = _xywh_to_xyxy([a["bbox"] for a in gts])
        pred = np.zeros((len(dts), 6))
        if dts:
            pred[:, 0] = [index[a["category_id"]] for a in dts]
            pred[:, 1] = [a["score"] for a in dts]
            pred[:, 2:] = _xywh_to_xyxy([a["bbox"] for a in dts])
        cm.update(pred, gt_box, [index[a["category_id"]] for a in gts],
                  ignore=[bool(a.get("iscrowd", 0)) for a in gts])
    return cm


def _xywh_to_xyxy(boxes) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


# ---------------------------------------------------------------------------- per-class AP and PR curves
def coco_classwise(ev, catid2name: Optional[Dict[int, str]] = None) -> List[Tuple[str, float, float]]:
    """(name, AP@[.5:.95], AP50) per category of an accumulated COCOeval (area all, last maxDets);
    nan for a category without ground truth."""
    precision = ev.eval["precision"]  # [T, R, K, A, M]; -1 where a category has no ground truth
    t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
    out = []
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        ap = float(p[p > -1].mean()) if (p > -1).any() else float("nan")
        p50 = p[t50][p[t50] > -1]
        ap50 = float(p50.mean()) if p50.size else float("nan")
        out.append(((catid2name or {}).get(cat, str(cat)), ap, ap50))
    return out


def coco_pr_curves(ev, catid2name: Optional[Dict[int, str]] = None, iou: float = 0.5
                   ) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """name -> (recall [R], precision [R]) at IoU ``iou`` (area all, last maxDets), categories
    with ground truth only."""
    t = int(np.argmin(np.abs(ev.params.iouThrs - iou)))
    precision = ev.eval["precision"][t, :, :, 0, -1]  # [R, K]
    recall = np.asarray(ev.params.recThrs)
    return {(catid2name or {}).get(cat, str(cat)): (recall, precision[:, k])
            for k, cat in enumerate(ev.params.catIds) if (precision[:, k] > -1).all()}


def _axes(x_max: float, y_max: float, xlabel: str, ylabel: str, title: str, fmt: str = ".1f"):
    """A white 640x480 canvas with a grid (0..x_max, 0..y_max, 10 steps, every other labelled)
    and titles; returns (canvas, to_px(x, y) -> int32 pixel coordinates)."""
    w, h, left, right, top, bottom = 640, 480, 60, 20, 40, 50
    pw, ph = w - left - right, h - top - bottom
    canvas = np.full((h, w, 3), 255, np.uint8)
    for i, v in enumerate(np.linspace(0, 1, 11)):
        x, y = left + int(round(v * pw)), top + int(round((1 - v) * ph))
        cv2.line(canvas, (x, top), (x, top + ph), GREY, 1)
        cv2.line(canvas, (left, y), (left + pw, y), GREY, 1)
        if i % 2 == 0:
            cv2.putText(canvas, f"{v * x_max:{fmt}}", (x - 10, top + ph + 18), FONT, 0.4, BLACK, 1,
                        cv2.LINE_AA)
            cv2.putText(canvas, f"{v * y_max:{fmt}}", (left - 32, y + 4), FONT, 0.4, BLACK, 1,
                        cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (left + pw, top + ph), BLACK, 1)
    cv2.putText(canvas, xlabel, (left + pw // 2 - 4 * len(xlabel), h - 12), FONT, 0.5, BLACK, 1,
                cv2.LINE_AA)
    cv2.putText(canvas, ylabel, (5, top - 10), FONT, 0.5, BLACK, 1, cv2.LINE_AA)
    tw = cv2.getTextSize(title, FONT, 0.55, 1)[0][0]
    cv2.putText(canvas, title, (left + (pw - tw) // 2, top - 12), FONT, 0.55, BLACK, 1, cv2.LINE_AA)

    def to_px(x, y) -> np.ndarray:
        x = np.clip(np.asarray(x, np.float64) / x_max, 0, 1)
        y = np.clip(np.asarray(y, np.float64) / y_max, 0, 1)
        return np.stack([left + x * pw, top + (1 - y) * ph], -1).round().astype(np.int32)
    return canvas, to_px


def plot_pr_curve(recall: np.ndarray, precision: np.ndarray, path: str, title: str = "") -> str:
    """One precision-recall curve as a 640x480 PNG."""
    canvas, to_px = _axes(1.0, 1.0, "recall", "precision", title)
    if len(recall):
        pts = to_px(recall, precision)
        cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, BLUE, 2, cv2.LINE_AA)
    _write(path, canvas)
    return path


def plot_points(points: Sequence[Tuple[str, float, float]], path: str, xlabel: str, ylabel: str,
                title: str = "") -> str:
    """Labelled points ``(label, x, y)`` as a 640x480 PNG (axes from 0 to the largest x, y)."""
    x_max = max([p[1] for p in points] + [1e-6]) * 1.15
    y_max = max([p[2] for p in points] + [1e-6]) * 1.15
    canvas, to_px = _axes(x_max, y_max, xlabel, ylabel, title, ".3g")
    placed: List[Tuple[int, int, int, int]] = []  # label boxes so far: a new one moves down
    for label, x, y in points:
        px, py = (int(v) for v in to_px(x, y))
        cv2.circle(canvas, (px, py), 5, BLUE, -1, cv2.LINE_AA)
        tw = cv2.getTextSize(label, FONT, 0.4, 1)[0][0]
        x1, y1 = min(px + 8, canvas.shape[1] - tw - 2), py - 6
        while any(x1 < bx2 and bx1 < x1 + tw and y1 - 12 < by2 and by1 < y1 for bx1, by1, bx2, by2 in placed):
            y1 += 14
        placed.append((x1, y1 - 12, x1 + tw, y1))
        cv2.putText(canvas, label, (x1, y1), FONT, 0.4, BLACK, 1, cv2.LINE_AA)
    _write(path, canvas)
    return path


def save_pr_curves(curves: Dict[str, Tuple[np.ndarray, np.ndarray]], out_dir: str,
                   ap: Optional[Dict[str, float]] = None) -> List[str]:
    """``out_dir/<class>_precision_recall_curve.png`` per class; returns the paths."""
    paths = []
    for name, (recall, precision) in curves.items():
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
        title = f"{name}" + (f"  AP {ap[name]:.3f}" if ap and name in ap else "")
        paths.append(plot_pr_curve(recall, precision,
                                   os.path.join(out_dir, f"{safe}_precision_recall_curve.png"), title))
    return paths


def classwise_report(eval_obj, out_dir: str, catid2name: Optional[Dict[int, str]] = None,
                     score_thresh: float = 0.25) -> str:
    """Per-class AP table, PR curves (``out_dir/pr_curve/``) and the confusion matrix
    (``out_dir/confusion_matrix.png``) from a COCOeval or a VOCMetric; returns the text to print."""
    if hasattr(eval_obj, "pr_curves"):  # VOCMetric
        rows = [(r["class"], r["ap"]) for r in eval_obj.eval_results]
        table = format_table(["category", f"AP ({eval_obj.map_type})"], rows)
        curves, ap = eval_obj.pr_curves(), dict(rows)
        cm, names = eval_obj.confusion, eval_obj.names
    else:  # pycocotools COCOeval
        rows = coco_classwise(eval_obj, catid2name)
        table = format_table(["category", "AP", "AP50"], rows)
        curves, ap = coco_pr_curves(eval_obj, catid2name), {r[0]: r[2] for r in rows}
        cm = confusion_from_cocoeval(eval_obj, score_thresh=score_thresh)
        names = [(catid2name or {}).get(c, str(c)) for c in eval_obj.params.catIds]
    pr_dir = os.path.join(out_dir, "pr_curve")
    save_pr_curves(curves, pr_dir, ap)
    cm_path = cm.plot(os.path.join(out_dir, "confusion_matrix.png"), names)
    return (f"per-class AP:\n{table}\nPR curves (IoU 0.5): {pr_dir}/\n"
            f"confusion matrix (IoU >= {cm.iou_thresh}, score >= {cm.score_thresh}):\n"
            f"{cm.table(names)}\nconfusion matrix image: {cm_path}")


def _write(path: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not cv2.imwrite(path, image):
        raise OSError(f"could not write {path}")

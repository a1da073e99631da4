"""Anchor clustering for YOLO heads: box shapes -> k-means with IoU distance (+ genetic refinement).

Methods, as PaddleDetection's ``tools/anchor_cluster.py`` names them:

- ``v2`` (YOLOv2 / darknet ``gen_anchors``): k-means on (w, h) with distance 1 - IoU, where IoU
  compares shapes aligned at one corner; centres are cluster means.
- ``v5`` (YOLOv5 ``autoanchor``): start from the ``v2`` result, then a genetic search that
  multiplies anchors by random factors and keeps a mutation when the fitness
  ``mean(best_ratio * (best_ratio > thresh))`` improves; ``best_ratio`` of a box is
  ``max over anchors of min(w/aw, aw/w, h/ah, ah/h)``. (PaddleDetection starts this search from
  scipy's Euclidean k-means on whitened shapes; IoU k-means is a better start and needs no scipy.)

Shapes are measured on the network input: a box of an ``w x h`` image goes to ``size`` by the
reader's resize (stretched when ``keep_ratio`` is false, as the PP-YOLO readers do).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..core.errors import DatasetError


def box_shapes(records: Sequence[dict], size: Tuple[int, int], keep_ratio: bool = False,
               min_side: float = 2.0) -> np.ndarray:
    """(w, h) [N,2] of every ``gt_bbox`` (xyxy pixels) of ``records``, resized to ``size`` = (W, H).

    Boxes with both sides under ``min_side`` pixels after resizing are dropped."""
    boxes = [np.asarray(r["gt_bbox"], np.float64).reshape(-1, 4) for r in records if "gt_bbox" in r]
    if not boxes:
        raise DatasetError("no gt_bbox in the dataset records: add 'gt_bbox' to TrainDataset.data_fields")
    counts = np.array([len(b) for b in boxes])
    im_wh = np.array([[float(r["w"]), float(r["h"])] for r in records if "gt_bbox" in r])
    scale = np.asarray(size, np.float64)[None, :] / im_wh  # [R,2] x and y scales
    if keep_ratio:
        scale = np.repeat(scale.min(1, keepdims=True), 2, axis=1)
    boxes = np.concatenate(boxes)
    wh = (boxes[:, 2:] - boxes[:, :2]) * np.repeat(scale, counts, axis=0)
    wh = wh[(wh >= min_side).any(1)]
    if len(wh) == 0:
        raise DatasetError("the dataset has no box of at least 2 pixels at this input size")
    return wh


def shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU [N,K] of shapes wh [N,2] and anchors [K,2], both anchored at the same corner."""
    inter = np.minimum(wh[:, None, :], anchors[None, :, :]).prod(2)
    return inter / (wh.prod(1)[:, None] + anchors.prod(1)[None, :] - inter)


def ratio_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """min(w/aw, aw/w, h/ah, ah/h) [N,K]: 1 for a perfect fit, 0.25 for a side 4x off."""
    r = wh[:, None, :] / anchors[None, :, :]
    return np.minimum(r, 1.0 / r).min(2)


def fitness(wh: np.ndarray, anchors: np.ndarray, thresh: float = 0.25) -> float:
    best = ratio_metric(wh, anchors).max(1)
    return float((best * (best > thresh)).mean())


def anchor_stats(wh: np.ndarray, anchors: np.ndarray, thresh: float = 0.25) -> Dict[str, float]:
    """``mean_iou``: mean best shape IoU; ``bpr``: share of boxes whose best anchor is within
    ``1/thresh`` x on both sides; ``anchors_past_thresh``: mean number of such anchors per box."""
    ratio = ratio_metric(wh, anchors)
    return {"mean_iou": float(shape_iou(wh, anchors).max(1).mean()),
            "bpr": float((ratio.max(1) > thresh).mean()),
            "anchors_past_thresh": float((ratio > thresh).sum(1).mean()),
            "fitness": fitness(wh, anchors, thresh)}


def sort_by_area(anchors: np.ndarray) -> np.ndarray:
    return anchors[np.argsort(anchors.prod(1), kind="stable")]


def kmeans_iou(wh: np.ndarray, n: int, iters: int = 1000, seed: int = 0) -> np.ndarray:
    """k-means of shapes with distance 1 - IoU; k-means++ start; returns anchors [n,2] by area."""
    wh = np.asarray(wh, np.float64)
    if len(np.unique(wh, axis=0)) < n:
        raise DatasetError(f"cannot cluster {n} anchors from {len(np.unique(wh, axis=0))} distinct "
                           "box shapes: lower -n or use a larger dataset")
    rng = np.random.default_rng(seed)
    centers = wh[[rng.integers(len(wh))]]
    while len(centers) < n:  # k-means++: far (in 1 - IoU) points are likelier next centres
        d = 1.0 - shape_iou(wh, centers).max(1)
        centers = np.vstack([centers, wh[rng.choice(len(wh), p=d ** 2 / (d ** 2).sum())]])
    assign = np.full(len(wh), -1)
    for _ in range(iters):
        iou = shape_iou(wh, centers)
        new = iou.argmax(1)
        if (new == assign).all():
            break
        assign = new
        counts = np.bincount(assign, minlength=n)
        sums = np.zeros((n, 2))
        np.add.at(sums, assign, wh)
        empty = counts == 0
        centers = np.where(empty[:, None], centers, sums / np.maximum(counts, 1)[:, None])
        if empty.any():  # an empty cluster restarts at the worst-fitted boxes
            worst = np.argsort(iou.max(1))[:int(empty.sum())]
            centers[empty] = wh[worst]
    return sort_by_area(centers)


def evolve(wh: np.ndarray, anchors: np.ndarray, iters: int = 1000, thresh: float = 0.25,
           mutation_prob: float = 0.9, sigma: float = 0.1, seed: int = 0) -> np.ndarray:
    """Genetic refinement (YOLOv5 autoanchor): keep random multiplicative mutations that raise
    ``fitness``. Returns anchors [K,2] by area."""
    rng = np.random.default_rng(seed)
    best, best_f = np.asarray(anchors, np.float64), fitness(wh, anchors, thresh)
    for _ in range(iters):
        v = np.ones_like(best)
        while (v == 1).all():
            v = ((rng.random(best.shape) < mutation_prob) * rng.random() * rng.standard_normal(best.shape)
                 * sigma + 1).clip(0.3, 3.0)
        cand = (best * v).clip(min=2.0)
        f = fitness(wh, cand, thresh)
        if f > best_f:
            best, best_f = cand, f
    return sort_by_area(best)


def cluster_anchors(wh: np.ndarray, n: int = 9, method: str = "v2", iters: int = 1000,
                    gen_iters: int = 1000, thresh: float = 0.25, seed: int = 0,
                    restarts: int = 3) -> np.ndarray:
    """Anchors [n,2] (float, by area) for shapes wh [N,2] with method ``v2`` or ``v5``; k-means
    runs ``restarts`` times from different seeds and keeps the best mean IoU."""
    if method not in ("v2", "v5"):
        raise ValueError(f"method must be 'v2' (IoU k-means) or 'v5' (k-means + genetic), got {method!r}")
    runs = [kmeans_iou(wh, n, iters, seed + k) for k in range(max(restarts, 1))]
    anchors = max(runs, key=lambda a: shape_iou(wh, a).max(1).mean())
    if method == "v5":
        anchors = evolve(wh, anchors, gen_iters, thresh, seed=seed)
    return anchors


def split_masks(n: int, levels: int) -> List[List[int]]:
    """anchor_masks for ``n`` anchors (by area) over ``levels`` outputs, largest anchors first
    (the stride-32 level), e.g. 9, 3 -> [[6,7,8],[3,4,5],[0,1,2]]."""
    if n % levels:
        raise ValueError(f"{n} anchors do not split evenly over {levels} output levels")
    k = n // levels
    return [list(range(i * k, (i + 1) * k)) for i in reversed(range(levels))]


def round_anchors(anchors: np.ndarray) -> List[List[int]]:
    """Integer anchors (at least 1 px), as configs write them."""
    return np.maximum(np.round(anchors), 1).astype(int).tolist()


def resize_mode(reader: Optional[dict]) -> bool:
    """``keep_ratio`` of the reader's resize op (BatchRandomResize / Resize), False when unset."""
    for key in ("batch_transforms", "sample_transforms"):
        for op in (reader or {}).get(key) or []:
            if isinstance(op, dict):
                for name in ("BatchRandomResize", "Resize", "RandomResize"):
                    if name in op:
                        return bool((op[name] or {}).get("keep_ratio", False))
    return False


# ---------------------------------------------------------------------------- the override YAML
def _flow(value) -> str:
    """``value`` as one-line YAML."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10 ** 9).strip()
    return text[:-3].strip() if text.endswith("...") else text


def anchor_override_yaml(cfg: dict, anchors: List[List[int]], masks: Optional[List[List[int]]] = None,
                         base: Optional[str] = None, header: str = "") -> str:
    """YAML text that sets ``anchors`` (and ``masks`` when given) in both places they live:
    ``YOLOv3Head`` and the TrainReader's ``Gt2YoloTarget`` (whose batch_transforms list is
    written out whole, since YAML merging replaces lists). ``base``: a ``_BASE_`` path to include."""
    lines = [f"# {line}" for line in header.splitlines()]
    if base:
        lines.append(f"_BASE_: [{_flow(base)}]")
    lines += ["", "YOLOv3Head:", f"  anchors: &anchors {_flow(anchors)}"]
    if masks is not None:
        lines.append(f"  anchor_masks: &anchor_masks {_flow(masks)}")
    ops = (cfg.get("TrainReader") or {}).get("batch_transforms") or []
    if any(isinstance(op, dict) and "Gt2YoloTarget" in op for op in ops):
        lines += ["", "TrainReader:", "  batch_transforms:"]
        for op in ops:
            (name, kwargs), = op.items()
            if name != "Gt2YoloTarget":
                lines.append(f"    - {name}: {_flow(kwargs or {})}")
                continue
            items = {**(kwargs or {}), "anchors": "*anchors"}
            if masks is not None:
                items["anchor_masks"] = "*anchor_masks"
            body = ", ".join(f"{k}: {v if isinstance(v, str) and v.startswith('*') else _flow(v)}"
                             for k, v in items.items())
            lines.append(f"    - {name}: {{{body}}}")
    return "\n".join(lines) + "\n"

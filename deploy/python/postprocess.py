"""Detector outputs -> per-image results and JSON records (numpy only: the Lite runner shares it).

``bbox [M,6]`` rows are (class, score, x1, y1, x2, y2) in original-image pixels; ``bbox_num [N]``
says how many rows belong to each image.
"""
from typing import List, Sequence

import numpy as np


def split_results(bbox: np.ndarray, bbox_num: np.ndarray, threshold: float) -> List[dict]:
    """``bbox [M,6]``, ``bbox_num [N]`` -> N dicts ``{"boxes": [K,6]}`` keeping rows with
    score > threshold and class >= 0 (NMS pads empty images with class -1 rows)."""
    bbox = np.asarray(bbox, np.float32).reshape(-1, 6)
    ends = np.cumsum(np.asarray(bbox_num, np.int64).reshape(-1))
    out = []
    for start, end in zip(np.concatenate([[0], ends[:-1]]), ends):
        rows = bbox[start:end]
        out.append({"boxes": rows[(rows[:, 1] > threshold) & (rows[:, 0] > -1)]})
    return out


def to_records(boxes: np.ndarray, labels: Sequence[str]) -> List[dict]:
    """``[K,6]`` rows -> JSON-ready ``{"class_id", "class_name", "score", "bbox": [x1,y1,x2,y2]}``."""
    cls = boxes[:, 0].astype(int).tolist()
    return [{"class_id": c, "class_name": labels[c] if 0 <= c < len(labels) else str(c),
             "score": float(s), "bbox": [float(v) for v in b]}
            for c, s, b in zip(cls, boxes[:, 1].tolist(), boxes[:, 2:6].tolist())]

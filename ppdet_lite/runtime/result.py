"""The one result record, ``Detections``, and the one rule that makes it from a detector's output.

A detector (dygraph, Paddle Inference, Paddle Lite) outputs ``bbox [M,6]`` rows (class, score,
x1, y1, x2, y2 in original-image pixels) and ``bbox_num [N]`` rows per image. ``split_detections``
keeps a row when ``score >= threshold`` and it is a real detection: padding rows never reach a
user. Padding is what the post-process adds to an image without detections so that every output
has a shape: ``[0, 0, 0, 0, 1, 1]`` (ours and PaddleDetection's per image) or a class ``-1`` row
(PaddleDetection, a batch with no box at all). NMS keeps only scores above its (non-negative)
``score_threshold``, so a score of 0 or a negative class marks padding.
"""
from dataclasses import dataclass, fields
from typing import Iterator, List, Sequence

import numpy as np


@dataclass
class Detections:
    """One image's detections: ``boxes [K,4]`` float32 x1, y1, x2, y2 in original-image pixels,
    ``scores [K]`` float32, ``class_ids [K]`` int64, ``class_names`` K strings.

    Reads like a dict too (``det["boxes"]``, ``set(det)``), the shape ``Detector`` returned."""
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: List[str]

    @classmethod
    def from_rows(cls, rows: np.ndarray, labels: Sequence[str]) -> "Detections":
        """``[K,6]`` (class, score, x1, y1, x2, y2) rows -> a record; names from ``labels``
        (a class id outside them is named by its number)."""
        rows = np.asarray(rows, np.float32).reshape(-1, 6)
        ids = rows[:, 0].astype(np.int64)
        names = [str(labels[i]) if 0 <= i < len(labels) else str(i) for i in ids.tolist()]
        return cls(rows[:, 2:6].copy(), rows[:, 1].copy(), ids, names)

    def rows(self) -> np.ndarray:
        """``[K,6]`` float32 (class, score, x1, y1, x2, y2), the exported model's row layout."""
        return np.concatenate([self.class_ids.reshape(-1, 1).astype(np.float32),
                               self.scores.reshape(-1, 1), self.boxes.reshape(-1, 4)],
                              1).astype(np.float32)

    def to_json(self) -> dict:
        """JSON-ready ``{"boxes": [[x1, y1, x2, y2], ...], "scores", "class_ids", "class_names"}``."""
        return {"boxes": self.boxes.astype(float).tolist(), "scores": self.scores.astype(float).tolist(),
                "class_ids": self.class_ids.astype(int).tolist(), "class_names": list(self.class_names)}

    def coco_records(self, image_id: int, file_name: str) -> List[dict]:
        """COCO results rows (``image_id``, ``category_id``, ``file_name``, ``bbox`` [x, y, w, h],
        ``score``) as PaddleDetection's deploy writes ``bbox.json``."""
        xywh = np.concatenate([self.boxes[:, :2], self.boxes[:, 2:] - self.boxes[:, :2]], 1)
        return [{"image_id": image_id, "category_id": c, "file_name": file_name, "bbox": b,
                 "score": s}
                for c, b, s in zip(self.class_ids.astype(int).tolist(), xywh.astype(float).tolist(),
                                   self.scores.astype(float).tolist())]

    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(f"{key!r}: a Detections record holds {self.keys()}")
        return getattr(self, key)

    def keys(self) -> List[str]:
        return [f.name for f in fields(self)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())


def keep_rows(rows: np.ndarray, threshold: float) -> np.ndarray:
    """Bool [K] over ``[K,6]`` rows: real detections with ``score >= threshold`` (module doc)."""
    rows = np.asarray(rows).reshape(-1, 6)
    return (rows[:, 0] >= 0) & (rows[:, 1] > 0) & (rows[:, 1] >= threshold)


def split_detections(bbox: np.ndarray, bbox_num: np.ndarray, threshold: float,
                     labels: Sequence[str]) -> List[Detections]:
    """``bbox [M,6]``, ``bbox_num [N]`` -> N ``Detections``, keeping ``keep_rows``."""
    bbox = np.asarray(bbox, np.float32).reshape(-1, 6)
    ends = np.cumsum(np.asarray(bbox_num, np.int64).reshape(-1))
    out = []
    for start, end in zip(np.concatenate([[0], ends[:-1]]), ends):
        rows = bbox[start:end]
        out.append(Detections.from_rows(rows[keep_rows(rows, threshold)], labels))
    return out

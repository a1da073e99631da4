"""Draw labelled boxes on an image."""
from typing import List, Sequence

import cv2
import numpy as np


def color_for(class_id: int) -> tuple:
    """A stable, distinct BGR colour per class id."""
    hue = (class_id * 47) % 180
    hsv = np.uint8([[[hue, 200, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def draw_boxes(image_bgr: np.ndarray, boxes: np.ndarray, class_ids: Sequence[int], scores: Sequence[float],
               names: List[str]) -> np.ndarray:
    """A copy of ``image_bgr`` with ``boxes`` ``[K,4]`` (x1, y1, x2, y2 pixels) drawn and labelled."""
    out = image_bgr.copy()
    thick = max(1, round(sum(out.shape[:2]) / 600))
    for (x1, y1, x2, y2), cid, score in zip(np.asarray(boxes, dtype=int).tolist(), class_ids, scores):
        color = color_for(int(cid))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        label = f"{names[int(cid)] if int(cid) < len(names) else cid} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        top = max(y1 - th - 4, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + 4), color, -1)
        cv2.putText(out, label, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out

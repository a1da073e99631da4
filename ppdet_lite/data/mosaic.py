"""Mosaic (YOLOv4's data augmentation): four images on one canvas around a random centre.

Takes a list of 4 decoded samples (the dataset groups them while ``epoch < mosaic_epoch``, see
``DetDataset``) and returns one sample of ``target_size`` (h, w). The canvas is split at a
centre (cx, cy) drawn uniformly in ``center_range`` × size; each image is resized to the canvas
size and gives the part of it that touches the centre: the top-left quadrant shows image 0's
bottom-right corner, top-right image 1's bottom-left, bottom-left image 2's top-right,
bottom-right image 3's top-left. Boxes move with their pixels, are clipped to their quadrant,
and dropped when the clipped box is narrower or lower than ``min_size`` pixels or keeps less
than ``min_area_ratio`` of its (resized) area. A single sample passes through unchanged.
"""
from collections.abc import Sequence
from typing import List

import cv2
import numpy as np

from ..core.errors import ConfigError
from ..core.registry import register

__all__ = ["Mosaic"]

_PER_BOX = ("gt_bbox", "gt_class", "gt_score", "is_crowd", "difficult")


@register
class Mosaic:
    """See the module docstring. Output: ``image`` uint8 [h, w, 3], boxes in canvas pixels,
    ``im_shape`` = (h, w), ``scale_factor`` = (1, 1), ``h``/``w`` = the canvas size."""

    def __init__(self, target_size=(416, 416), center_range=(0.25, 0.75), min_size: float = 2.,
                 min_area_ratio: float = 0.2, interp: int = cv2.INTER_LINEAR):
        if isinstance(target_size, int):
            target_size = [target_size, target_size]
        if len(target_size) != 2 or min(target_size) < 2:
            raise ConfigError(f"Mosaic: target_size must be [h, w], got {target_size!r}")
        lo, hi = center_range
        if not 0. < lo <= hi < 1.:
            raise ConfigError(f"Mosaic: center_range must satisfy 0 < low <= high < 1, got "
                              f"{center_range!r}")
        self.target_size = [int(v) for v in target_size]
        self.center_range = (float(lo), float(hi))
        self.min_size = float(min_size)
        self.min_area_ratio = float(min_area_ratio)
        self.interp = int(interp)

    def __call__(self, samples):
        if not isinstance(samples, Sequence):
            return samples
        if len(samples) != 4:
            raise ValueError(f"Mosaic needs 4 samples, got {len(samples)}: set the reader's "
                             "mosaic_epoch and keep Mosaic as the first op after Decode")
        h, w = self.target_size
        cx = int(round(np.random.uniform(*self.center_range) * w))
        cy = int(round(np.random.uniform(*self.center_range) * h))
        canvas = np.zeros((h, w, 3), np.uint8)
        # quadrant on the canvas (x1, y1, x2, y2) and the offset of the resized image in it
        quads = [(0, 0, cx, cy), (cx, 0, w, cy), (0, cy, cx, h), (cx, cy, w, h)]
        shifts = [(cx - w, cy - h), (cx, cy - h), (cx - w, cy), (cx, cy)]
        parts: List[dict] = []
        for s, (qx1, qy1, qx2, qy2), (dx, dy) in zip(samples, quads, shifts):
            im = s["image"]
            sy, sx = h / im.shape[0], w / im.shape[1]
            im = cv2.resize(np.asarray(im, np.uint8), (w, h), interpolation=self.interp)
            if qx2 > qx1 and qy2 > qy1:
                canvas[qy1:qy2, qx1:qx2] = im[qy1 - dy:qy2 - dy, qx1 - dx:qx2 - dx]
            box = np.asarray(s.get("gt_bbox", np.zeros((0, 4))), np.float32).reshape(-1, 4)
            box = box * np.array([sx, sy, sx, sy], np.float32) + np.array([dx, dy, dx, dy],
                                                                          np.float32)
            area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
            clipped = np.stack([np.clip(box[:, 0], qx1, qx2), np.clip(box[:, 1], qy1, qy2),
                                np.clip(box[:, 2], qx1, qx2), np.clip(box[:, 3], qy1, qy2)], 1)
            cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
            keep = ((cw >= self.min_size) & (ch >= self.min_size)
                    & (cw * ch >= self.min_area_ratio * np.maximum(area, 1e-12)))
            part = {"gt_bbox": clipped[keep]}
            for key in _PER_BOX[1:]:
                if key in s:
                    part[key] = np.asarray(s[key])[keep]
            parts.append(part)
        out = dict(samples[0])
        out["image"] = canvas
        for key in _PER_BOX:
            if key in out or key == "gt_bbox":
                out[key] = np.concatenate([p[key] for p in parts if key in p], 0)
        out["gt_bbox"] = out["gt_bbox"].astype(np.float32)
        out.update(h=h, w=w, im_shape=np.array([h, w], np.float32),
                   scale_factor=np.array([1., 1.], np.float32))
        return out

    def __repr__(self):
        return f"Mosaic(target_size={self.target_size})"

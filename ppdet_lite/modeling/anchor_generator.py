"""EfficientDet / RetinaNet anchors: per level l (stride ~2^l), per cell, num_scales octave
scales x aspect ratios of size anchor_scale * stride * 2^(i / num_scales).

Order (as the reference's, and the head's channel layout): level, then row y, column x, then
scale octave, then aspect ratio. Feature sizes halve with ceil from the image size, strides are
image / feature size (floats), centres at stride/2 + k * stride. Boxes are xyxy in input pixels.
"""
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["EfficientDetAnchors", "feature_sizes"]


def feature_sizes(image_size: Sequence[int], max_level: int) -> List[Tuple[int, int]]:
    """[(h, w)] for levels 0..max_level: each level is the previous one halved, rounding up."""
    h, w = int(image_size[0]), int(image_size[1])
    sizes = [(h, w)]
    for _ in range(max_level):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        sizes.append((h, w))
    return sizes


class EfficientDetAnchors:
    """``boxes(image_size)`` -> float32 [sum_l H_l*W_l*A, 4] xyxy; ``level_sizes(image_size)``.

    ``aspect_ratios``: (x, y) factor pairs, e.g. (1.4, 0.7), or plain w/h ratios r
    (then x = sqrt(r), y = 1/sqrt(r)). ``anchor_scale``: one value or one per level.
    """

    def __init__(self, min_level: int = 3, max_level: int = 7, num_scales: int = 3,
                 aspect_ratios: Sequence = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4)),
                 anchor_scale=4.0):
        if min_level > max_level:
            raise ValueError(f"anchors: min_level {min_level} > max_level {max_level}")
        self.min_level, self.max_level = int(min_level), int(max_level)
        self.num_levels = self.max_level - self.min_level + 1
        self.num_scales = int(num_scales)
        self.aspect_ratios = [tuple(a) if isinstance(a, (list, tuple)) else float(a)
                              for a in aspect_ratios]
        scales = list(anchor_scale) if isinstance(anchor_scale, (list, tuple)) \
            else [float(anchor_scale)] * self.num_levels
        if len(scales) != self.num_levels:
            raise ValueError(f"anchors: anchor_scale has {len(scales)} values for "
                             f"{self.num_levels} levels")
        self.anchor_scales = [float(s) for s in scales]
        self.num_anchors = self.num_scales * len(self.aspect_ratios)
        self._cache: Dict[Tuple[int, int], np.ndarray] = {}

    def level_sizes(self, image_size: Sequence[int]) -> List[Tuple[int, int]]:
        sizes = feature_sizes(image_size, self.max_level)
        return sizes[self.min_level:]

    def boxes(self, image_size: Sequence[int]) -> np.ndarray:
        key = (int(image_size[0]), int(image_size[1]))
        if key not in self._cache:
            self._cache[key] = self._generate(key)
        return self._cache[key]

    def _generate(self, image_size: Tuple[int, int]) -> np.ndarray:
        sizes = feature_sizes(image_size, self.max_level)
        out = []
        for li, level in enumerate(range(self.min_level, self.max_level + 1)):
            stride_y = sizes[0][0] / float(sizes[level][0])
            stride_x = sizes[0][1] / float(sizes[level][1])
            ys = np.arange(stride_y / 2, image_size[0], stride_y)
            xs = np.arange(stride_x / 2, image_size[1], stride_x)
            xv, yv = np.meshgrid(xs, ys)
            xv, yv = xv.reshape(-1), yv.reshape(-1)
            per_cell = []
            for octave in range(self.num_scales):
                size = self.anchor_scales[li] * 2 ** (octave / float(self.num_scales))
                for aspect in self.aspect_ratios:
                    if isinstance(aspect, tuple):
                        ax, ay = aspect
                    else:
                        ax = np.sqrt(aspect)
                        ay = 1.0 / ax
                    half_w = size * stride_x * ax / 2.0
                    half_h = size * stride_y * ay / 2.0
                    per_cell.append(np.stack([xv - half_w, yv - half_h, xv + half_w, yv + half_h], 1))
            out.append(np.stack(per_cell, 1).reshape(-1, 4))
        return np.concatenate(out, 0).astype("float32")

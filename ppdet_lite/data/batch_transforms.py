"""Batch operators: BatchRandomResize (one random size per batch) and Gt2YoloTarget.

Both take and return a list of samples. Gt2YoloTarget is vectorized over the whole batch and
reproduces PaddleDetection's per-box loop exactly, including its write order:
boxes are processed in order; a box's best anchor always writes its cell (a later box in the same
cell and anchor overwrites x, y, w, h, scale, obj, while class one-hots accumulate); with
``iou_thresh < 1`` a box also writes every other anchor (of any level) whose shape-IoU with it
exceeds iou_thresh, but only into a cell that no earlier write has touched.
"""
from collections.abc import Sequence
from typing import List

import cv2
import numpy as np

from ..core.errors import ConfigError
from ..core.registry import register
from .transforms_geometry import Resize

INTERPS = [cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4]


@register
class BatchRandomResize:
    """Resize every sample of a batch to one size drawn from ``target_size`` (and one cv2
    interpolation drawn from 5 when ``random_interp``); see ``Resize`` for boxes/im_shape."""

    def __init__(self, target_size, keep_ratio: bool, interp: int = cv2.INTER_NEAREST,
                 random_size: bool = True, random_interp: bool = False):
        if random_size and not isinstance(target_size, list):
            raise ConfigError(f"BatchRandomResize: with random_size, target_size must be a list of "
                              f"sizes, got {target_size!r}")
        self.target_size, self.keep_ratio, self.interp = target_size, keep_ratio, interp
        self.random_size, self.random_interp = random_size, random_interp

    def __call__(self, samples: List[dict]) -> List[dict]:
        size = (self.target_size[np.random.choice(len(self.target_size))] if self.random_size
                else self.target_size)
        interp = np.random.choice(INTERPS) if self.random_interp else self.interp
        return Resize(size, keep_ratio=self.keep_ratio, interp=interp)(samples)


def shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes and anchors sharing a corner: wh [M,2], anchors [A,2] -> [M,A], in float64
    like PaddleDetection's scalar ``jaccard_overlap([0,0,w,h], [0,0,aw,ah])``."""
    wh = wh.astype(np.float64)
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    return inter / (wh[:, 0:1] * wh[:, 1:2] + (anchors[:, 0] * anchors[:, 1])[None] - inter)


@register
class Gt2YoloTarget:
    """Per level i: ``target{i}`` [na_i, 6+num_classes, H/ds_i, W/ds_i] float32 with channels
    tx, ty (cell offsets), tw, th (log of size / anchor), 2 - w*h, gt_score, one-hot classes.

    Input boxes: ``gt_bbox`` normalized cx, cy, w, h; ``gt_class`` [M] or [M,1]; optional
    ``gt_score``; image CHW. Pops ``gt_class`` and ``gt_score`` as PaddleDetection does.
    """

    def __init__(self, anchors, anchor_masks, downsample_ratios, num_classes: int = 80,
                 iou_thresh: float = 1.0):
        if len(anchor_masks) != len(downsample_ratios):
            raise ConfigError(f"Gt2YoloTarget: anchor_masks ({len(anchor_masks)} levels) and "
                              f"downsample_ratios ({len(downsample_ratios)}) must have equal length")
        self.anchors, self.anchor_masks = anchors, anchor_masks
        self.downsample_ratios, self.num_classes, self.iou_thresh = downsample_ratios, num_classes, iou_thresh

    def __call__(self, samples: List[dict]) -> List[dict]:
        if not isinstance(samples, Sequence):
            return self([samples])[0]
        h, w = samples[0]["image"].shape[1:3]
        anchors = np.asarray(self.anchors, np.float64)
        an_hw = anchors / np.array([[w, h]])
        bs = len(samples)
        counts = [len(s["gt_bbox"]) for s in samples]
        box = np.concatenate([s["gt_bbox"] for s in samples]).astype(np.float32).reshape(-1, 4)
        cls = np.concatenate([np.asarray(s["gt_class"]).reshape(-1) for s in samples]).astype(np.int64)
        score = np.concatenate([np.asarray(s["gt_score"]).reshape(-1) if "gt_score" in s
                                else np.ones(n, np.float32) for s, n in zip(samples, counts)]
                               ).astype(np.float32)
        img = np.repeat(np.arange(bs), counts)
        valid = (box[:, 2] > 0) & (box[:, 3] > 0) & (score > 0)
        box, cls, score, img = box[valid], cls[valid], score[valid], img[valid]
        order = np.arange(len(box))                 # processing order of the reference loop
        gx, gy, gw, gh = box.T
        gx64, gy64, gw64, gh64 = box.astype(np.float64).T
        iou = shape_iou(box[:, 2:], an_hw)                            # [M, A]
        best = np.argmax(iou, axis=1)          # first maximum, as the strict '>' loop
        outs = []
        for mask, ds in zip(self.anchor_masks, self.downsample_ratios):
            gh_n, gw_n = int(h / ds), int(w / ds)
            na = len(mask)
            target = np.zeros((bs, na, 6 + self.num_classes, gh_n, gw_n), np.float32)
            gi = np.minimum((gx64 * gw_n).astype(np.int64), gw_n - 1)
            gj = np.minimum((gy64 * gh_n).astype(np.int64), gh_n - 1)
            mask_arr = np.asarray(mask)
            # events (box m, slot n): best-anchor events + (iou_thresh < 1) extra-anchor events
            is_best = best[:, None] == mask_arr[None, :]                   # [M, na]
            ev_best = is_best
            ev_extra = (~is_best & (iou[:, mask_arr] > self.iou_thresh)) if self.iou_thresh < 1 \
                else np.zeros_like(is_best)
            m_idx, n_idx = np.nonzero(ev_best | ev_extra)    # row-major: box order, then slot order
            kind_best = ev_best[m_idx, n_idx]
            # reference order within a box: best event first, then extras in mask order
            seq = order[m_idx] * (na + 1) + np.where(kind_best, 0, 1 + n_idx)
            srt = np.argsort(seq, kind="stable")
            m_idx, n_idx, kind_best = m_idx[srt], n_idx[srt], kind_best[srt]
            cell = ((img[m_idx] * na + n_idx) * gh_n + gj[m_idx]) * gw_n + gi[m_idx]
            # an extra event writes only if it is the first event of its cell
            _, first = np.unique(cell, return_index=True)
            is_first = np.zeros(len(cell), bool)
            is_first[first] = True
            writes = kind_best | is_first
            m_idx, n_idx, cell = m_idx[writes], n_idx[writes], cell[writes]
            # last writer of each cell sets the box channels; all writers set their class
            _, last_rev = np.unique(cell[::-1], return_index=True)
            last = len(cell) - 1 - last_rev
            mm, nn = m_idx[last], n_idx[last]
            aidx = mask_arr[nn]
            b, j, i = img[mm], gj[mm], gi[mm]
            # float64 maths then float32, as the reference's numpy-scalar arithmetic does
            vals = np.stack([
                gx64[mm] * gw_n - i,
                gy64[mm] * gh_n - j,
                np.log(gw64[mm] * w / anchors[aidx, 0]),
                np.log(gh64[mm] * h / anchors[aidx, 1]),
                2.0 - (gw[mm] * gh[mm]).astype(np.float64),
                score[mm]], 1)
            target[b, nn, :6, j, i] = vals
            target[img[m_idx], n_idx, 6 + cls[m_idx], gj[m_idx], gi[m_idx]] = 1.0
            outs.append(target)
        for k, s in enumerate(samples):
            for lvl, target in enumerate(outs):
                s[f"target{lvl}"] = target[k]
            s.pop("gt_class", None)
            s.pop("gt_score", None)
        return samples

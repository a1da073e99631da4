"""Geometric sample operators: RandomExpand, RandomCrop, RandomFlip, Resize, LetterBoxResize
(PaddleDetection args), RandomScaleJitter (EfficientDet's training resize).

Boxes are ``gt_bbox`` xyxy pixels of the current image; every op moves them with the image.
``RandomCrop`` draws all ``num_attempts`` candidate crops of a threshold at once and keeps the
first valid one, which is what PaddleDetection's attempt loop returns.
"""
from numbers import Number

import cv2
import numpy as np

from ..core.errors import ConfigError
from ..core.registry import register
from ..runtime import preprocess
from ..runtime.boxes import box_iou
from .transforms import BaseOperator

_BOX_FIELDS = ("gt_class", "gt_score", "is_crowd", "difficult")


@register
class RandomExpand(BaseOperator):
    """With probability ``1 - prob`` (PaddleDetection's convention) place the image at a random
    offset on a canvas ``ratio`` ~ U(1, ratio) times larger filled with ``fill_value`` (RGB);
    boxes shift by the offset. The image becomes float32."""

    def __init__(self, ratio: float = 4.0, prob: float = 0.5, fill_value=(127.5, 127.5, 127.5)):
        if ratio <= 1.01:
            raise ConfigError(f"RandomExpand: ratio must be > 1.01, got {ratio}")
        if isinstance(fill_value, Number):
            fill_value = (fill_value,) * 3
        self.ratio, self.prob, self.fill_value = ratio, prob, tuple(float(v) for v in fill_value)

    def apply(self, sample):
        if np.random.uniform(0.0, 1.0) < self.prob:
            return sample
        im = sample["image"]
        height, width = im.shape[:2]
        ratio = np.random.uniform(1.0, self.ratio)
        h, w = int(height * ratio), int(width * ratio)
        if h <= height or w <= width:
            return sample
        y = np.random.randint(0, h - height)
        x = np.random.randint(0, w - width)
        sample["image"] = cv2.copyMakeBorder(im.astype(np.float32, copy=False), y, h - height - y,
                                             x, w - width - x, cv2.BORDER_CONSTANT,
                                             value=self.fill_value)
        if "gt_bbox" in sample and len(sample["gt_bbox"]):
            sample["gt_bbox"] = sample["gt_bbox"] + np.array([x, y, x, y], np.float32)
        return sample


@register
class RandomCrop(BaseOperator):
    """SSD-style crop: for thresholds in random order (plus 'no_crop' when allowed), sample up to
    ``num_attempts`` crops of area scale ``scaling`` and aspect ``aspect_ratio``; accept the first
    whose best IoU with a box >= threshold and which keeps a box centre. Boxes are clipped to the
    crop; boxes whose centre falls outside are dropped with their class/score/crowd/difficult."""

    def __init__(self, aspect_ratio=(0.5, 2.0), thresholds=(0.0, 0.1, 0.3, 0.5, 0.7, 0.9),
                 scaling=(0.3, 1.0), num_attempts: int = 50, allow_no_crop: bool = True,
                 cover_all_box: bool = False, is_mask_crop: bool = False):
        self.aspect_ratio = list(aspect_ratio) if aspect_ratio is not None else None
        self.thresholds, self.scaling = list(thresholds), list(scaling)
        self.num_attempts, self.allow_no_crop = num_attempts, allow_no_crop
        self.cover_all_box, self.is_mask_crop = cover_all_box, is_mask_crop

    def _candidates(self, h: int, w: int) -> np.ndarray:
        """``num_attempts`` crops [K,4] int xyxy (rows of NaN where the aspect check fails)."""
        k = self.num_attempts
        scale = np.random.uniform(*self.scaling, size=k)
        if self.aspect_ratio is not None:
            lo = np.maximum(self.aspect_ratio[0], scale ** 2)
            hi = np.minimum(self.aspect_ratio[1], scale ** -2)
            ar = np.random.uniform(lo, hi)
            h_scale, w_scale = scale / np.sqrt(ar), scale * np.sqrt(ar)
            ok = np.ones(k, bool)
        else:
            h_scale, w_scale = np.random.uniform(*self.scaling, size=(2, k))
            ratio = (h * h_scale) / (w * w_scale)
            ok = (ratio >= 0.5) & (ratio <= 2.0)
        crop_h = (h * h_scale).astype(np.int64)
        crop_w = (w * w_scale).astype(np.int64)
        y = (np.random.uniform(size=k) * np.maximum(h - crop_h, 1)).astype(np.int64)
        x = (np.random.uniform(size=k) * np.maximum(w - crop_w, 1)).astype(np.int64)
        crops = np.stack([x, y, x + crop_w, y + crop_h], 1).astype(np.float32)
        crops[~ok] = np.nan
        return crops

    def apply(self, sample):
        if "gt_bbox" not in sample or len(sample["gt_bbox"]) == 0:
            return sample
        h, w = sample["image"].shape[:2]
        box = sample["gt_bbox"]
        thresholds = list(self.thresholds) + (["no_crop"] if self.allow_no_crop else [])
        np.random.shuffle(thresholds)
        centers = (box[:, :2] + box[:, 2:]) / 2
        for thresh in thresholds:
            if thresh == "no_crop":
                return sample
            crops = self._candidates(h, w)                       # [K,4]
            iou = box_iou(box, np.nan_to_num(crops), eps=1e-10)  # [N,K]
            ok = ~np.isnan(crops[:, 0]) & (iou.max(0) >= thresh)
            if self.cover_all_box:
                ok &= iou.min(0) >= thresh
            tl = np.maximum(box[:, None, :2], crops[None, :, :2])   # [N,K,2]
            br = np.minimum(box[:, None, 2:], crops[None, :, 2:])
            inside = ((crops[None, :, :2] <= centers[:, None]) & (centers[:, None] < crops[None, :, 2:])
                      ).all(2) & (tl < br).all(2)                 # [N,K]
            ok &= inside.any(0)
            if not ok.any():
                continue
            k = int(np.argmax(ok))
            x1, y1, x2, y2 = crops[k].astype(np.int64)
            keep = np.flatnonzero(inside[:, k])
            sample["image"] = sample["image"][y1:y2, x1:x2]
            sample["gt_bbox"] = (np.concatenate([tl[keep, k], br[keep, k]], 1)
                                 - np.array([x1, y1, x1, y1], np.float32)).astype(np.float32)
            for key in _BOX_FIELDS:
                if key in sample:
                    sample[key] = sample[key][keep]
            return sample
        return sample


@register
class RandomFlip(BaseOperator):
    """Mirror left-right with probability ``prob``: x -> width - x for boxes."""

    def __init__(self, prob: float = 0.5):
        if not isinstance(prob, float):
            raise ConfigError(f"RandomFlip: prob must be a float, got {prob!r}")
        self.prob = prob

    def apply(self, sample):
        if np.random.uniform(0, 1) < self.prob:
            im = sample["image"]
            width = im.shape[1]
            sample["image"] = cv2.flip(im, 1) if im.ndim == 3 and im.shape[2] <= 4 else im[:, ::-1]
            if "gt_bbox" in sample and len(sample["gt_bbox"]):
                box = sample["gt_bbox"]
                sample["gt_bbox"] = np.stack([width - box[:, 2], box[:, 1], width - box[:, 0],
                                              box[:, 3]], 1).astype(box.dtype)
            sample["flipped"] = True
        return sample


@register
class Resize(BaseOperator):
    """Resize to ``target_size`` (h, w) -- or, with ``keep_ratio``, by the largest scale fitting
    min/max sides (``ppdet_lite.runtime.preprocess.Resize``, which deploy runs too). Sets
    ``im_shape`` = new (h, w), multiplies ``scale_factor`` by (sy, sx); boxes are scaled and
    clipped to the new image. The image becomes float32."""

    def __init__(self, target_size, keep_ratio: bool, interp: int = cv2.INTER_LINEAR):
        self.op = preprocess.Resize(target_size, keep_ratio, interp)
        self.target_size, self.keep_ratio, self.interp = self.op.target_size, keep_ratio, self.op.interp

    def apply(self, sample):
        sy, sx, resize_h, resize_w = self.op.scales(*sample["image"].shape[:2])
        sample["image"], _ = self.op(sample["image"], sample)  # sets im_shape, scale_factor
        if "gt_bbox" in sample and len(sample["gt_bbox"]):
            box = sample["gt_bbox"] * np.array([sx, sy, sx, sy], np.float32)
            sample["gt_bbox"] = np.minimum(np.maximum(box, 0), np.array(
                [resize_w, resize_h, resize_w, resize_h], np.float32)).astype(np.float32)
        return sample


@register
class LetterBoxResize(BaseOperator):
    """Keep the aspect ratio, fit ``target_size`` (h, w) and centre on a ``fill_value`` canvas
    (``ppdet_lite.runtime.preprocess.LetterBoxResize``, which deploy runs too; darknet's sizes and
    offsets). Boxes are scaled by (nw / w, nh / h), shifted by (left, top) and clipped to the
    content; ``im_shape`` = the content's (nh, nw), ``scale_factor`` multiplied by the scales, so
    the YOLO decodes map boxes back to the original image. The image becomes float32.

    Unlike PaddleDetection's MOT LetterBoxResize, ``gt_bbox`` is xyxy pixels in and out (the
    sample contract), not normalised cx, cy, w, h in.
    """

    def __init__(self, target_size, fill_value=127, interp: int = cv2.INTER_LINEAR):
        self.op = preprocess.LetterBoxResize(target_size, fill_value, interp)
        self.target_size, self.fill_value, self.interp = (self.op.target_size, self.op.fill_value,
                                                          self.op.interp)

    def apply(self, sample):
        h, w = sample["image"].shape[:2]
        nh, nw, top, left = self.op.layout(h, w)
        sample["image"], _ = self.op(sample["image"], sample)  # sets im_shape, scale_factor
        if "gt_bbox" in sample and len(sample["gt_bbox"]):
            scale = np.array([nw / w, nh / h, nw / w, nh / h], np.float32)
            shift = np.array([left, top, left, top], np.float32)
            sample["gt_bbox"] = np.clip(sample["gt_bbox"] * scale + shift, shift,
                                        shift + np.array([nw, nh, nw, nh], np.float32)
                                        ).astype(np.float32)
        return sample


@register
class RandomScaleJitter(BaseOperator):
    """EfficientDet's training resize and crop (effdet's ``RandomResizePad``, the reference's
    scale jitter): a random factor in ``scale_range`` times ``target_size`` (h, w) bounds the
    image (aspect kept), a random ``target_size`` window of the result is kept and padded with
    ``fill_value`` (per channel, effdet's ImageNet mean) at the bottom / right where it is smaller.
    Boxes are scaled, shifted and clipped to the window; boxes left without area are dropped with
    their fields. ``im_shape`` = ``target_size``, ``scale_factor`` multiplied by the scale."""

    def __init__(self, target_size, scale_range=(0.1, 2.0), fill_value=(124, 116, 104),
                 interp: int = cv2.INTER_LINEAR):
        size = [target_size] * 2 if isinstance(target_size, Number) else list(target_size)
        if len(size) != 2 or min(size) <= 0:
            raise ConfigError(f"RandomScaleJitter: target_size {target_size!r}: expected a side or [h, w]")
        if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
            raise ConfigError(f"RandomScaleJitter: scale_range {scale_range!r}: expected [low, high], "
                              "0 < low <= high")
        self.target_size = [int(v) for v in size]
        self.scale_range, self.fill_value, self.interp = list(scale_range), fill_value, interp

    def apply(self, sample):
        th, tw = self.target_size
        im = sample["image"]
        h, w = im.shape[:2]
        jitter = np.random.uniform(*self.scale_range)
        scale = min(int(th * jitter) / h, int(tw * jitter) / w)
        nh, nw = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
        im = cv2.resize(im, (nw, nh), interpolation=self.interp)
        y = int(max(nh - th, 0) * np.random.uniform())
        x = int(max(nw - tw, 0) * np.random.uniform())
        im = im[y:y + th, x:x + tw]
        canvas = np.empty((th, tw) + im.shape[2:], im.dtype)
        canvas[...] = np.asarray(self.fill_value, im.dtype)
        canvas[:im.shape[0], :im.shape[1]] = im
        sample["image"] = canvas
        sample["im_shape"] = np.array([th, tw], np.float32)
        sample["scale_factor"] = np.asarray(sample.get("scale_factor", [1., 1.]), np.float32) * scale
        if "gt_bbox" in sample and len(sample["gt_bbox"]):
            box = sample["gt_bbox"] * np.float32(scale) - np.array([x, y, x, y], np.float32)
            box = np.clip(box, 0, np.array([tw, th, tw, th], np.float32))
            keep = np.flatnonzero((box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1]))
            sample["gt_bbox"] = box[keep].astype(np.float32)
            for key in _BOX_FIELDS:
                if key in sample:
                    sample[key] = sample[key][keep]
        return sample

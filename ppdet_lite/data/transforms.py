"""Sample operators: decode, Mixup, colour, normalisation, box format (PaddleDetection's names/args).

Each op is ``op(sample) -> sample`` on the dict of ``ppdet_lite/data/__init__.py``; given a list
of samples (a Mixup pair, or a batch inside ``batch_transforms``) it maps over the list. Geometric
ops live in ``transforms_geometry.py``. Randomness comes from ``np.random``, which the loader
seeds per worker and epoch.
"""
import math
from collections.abc import Sequence
from numbers import Number

import cv2
import numpy as np

from ..core.errors import ConfigError, DatasetError
from ..core.registry import register
from ..runtime import preprocess
from ..runtime.images import read_image
from ..utils.logger import get_logger

logger = get_logger(__name__)


class BaseOperator:
    """``__call__`` applies ``apply`` to one sample or to each sample of a list."""

    def apply(self, sample: dict) -> dict:
        return sample

    def __call__(self, sample):
        if isinstance(sample, Sequence):
            return [self.apply(s) for s in sample]
        return self.apply(sample)

    def __repr__(self):
        return type(self).__name__


@register
class Decode(BaseOperator):
    """Read ``im_file`` (or decode ``image`` bytes) -> ``image`` HWC uint8 RGB; sets h, w,
    ``im_shape`` = (h, w) and ``scale_factor`` = (1, 1). Pops ``im_file`` as PaddleDetection."""

    def apply(self, sample):
        if "image" not in sample:
            im = read_image(sample.pop("im_file"))  # refuses a truncated file by name
        elif isinstance(sample["image"], (bytes, bytearray)):
            try:
                im = read_image(sample["image"])
            except DatasetError as e:
                raise DatasetError(f"im_id {sample.get('im_id')}: {e}") from None
        else:
            im = sample["image"]
        h, w = im.shape[:2]
        for key, size in (("h", h), ("w", w)):
            if key in sample and sample[key] != size:
                logger.warning(f"im_id {sample.get('im_id')}: image {key}={size} differs from the "
                               f"annotation's {sample[key]}; using the image's")
            sample[key] = size
        sample["image"] = im
        sample["im_shape"] = np.array([h, w], np.float32)
        sample["scale_factor"] = np.ones(2, np.float32)
        return sample


@register
class Mixup:
    """Blend a pair: image = a*f + b*(1-f) on the max canvas (uint8), f ~ Beta(alpha, beta);
    boxes/classes/crowd/difficult concatenated, ``gt_score`` = f for a's boxes, 1-f for b's."""

    def __init__(self, alpha: float = 1.5, beta: float = 1.5):
        if alpha <= 0 or beta <= 0:
            raise ConfigError(f"Mixup: alpha and beta must be > 0, got {alpha}, {beta}")
        self.alpha, self.beta = alpha, beta

    def __call__(self, sample):
        if not isinstance(sample, Sequence):
            return sample
        if len(sample) != 2:
            raise ValueError(f"Mixup needs two samples, got {len(sample)}")
        a, b = sample
        factor = float(np.clip(np.random.beta(self.alpha, self.beta), 0.0, 1.0))
        if factor >= 1.0:
            return a
        if factor <= 0.0:
            return b
        ia, ib = a["image"], b["image"]
        h, w = max(ia.shape[0], ib.shape[0]), max(ia.shape[1], ib.shape[1])
        im = np.zeros((h, w, ia.shape[2]), np.float32)
        im[:ia.shape[0], :ia.shape[1]] = ia * np.float32(factor)
        im[:ib.shape[0], :ib.shape[1]] += ib * np.float32(1.0 - factor)
        out = dict(a)
        out["image"] = im.astype(np.uint8)
        for key in ("gt_bbox", "gt_class", "is_crowd", "difficult"):
            if key in a:
                out[key] = np.concatenate([a[key], b[key]], 0)
        if "gt_class" in a:
            out["gt_score"] = np.concatenate([np.full((len(a["gt_class"]), 1), factor),
                                              np.full((len(b["gt_class"]), 1), 1.0 - factor)
                                              ]).astype(np.float32)
        return out


@register
class RandomDistort(BaseOperator):
    """Random brightness / contrast / saturation / hue, each [low, high, prob]; the image becomes
    float32 (not clipped, as PaddleDetection). Every op is affine in RGB, so the chosen chain is
    composed into one 3x4 matrix and applied in a single pass."""

    _GRAY = np.array([0.299, 0.587, 0.114])
    _YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]])
    _IYIQ = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.107, 1.705]])

    def __init__(self, hue=(-18, 18, 0.5), saturation=(0.5, 1.5, 0.5), contrast=(0.5, 1.5, 0.5),
                 brightness=(0.5, 1.5, 0.5), random_apply: bool = True, count: int = 4,
                 random_channel: bool = False):
        self.hue, self.saturation = list(hue), list(saturation)
        self.contrast, self.brightness = list(contrast), list(brightness)
        self.random_apply, self.count, self.random_channel = random_apply, count, random_channel

    @staticmethod
    def _draw(cfg):
        """None when skipped (PaddleDetection applies when uniform >= prob), else the delta."""
        low, high, prob = cfg
        if np.random.uniform(0.0, 1.0) < prob:
            return None
        return np.random.uniform(low, high)

    def _affine(self, kind: str):
        """(M 3x3, t 3) with out = M @ rgb + t, or None."""
        d = self._draw(getattr(self, kind))
        if d is None:
            return None
        if kind == "brightness":
            return np.eye(3), np.full(3, d)
        if kind == "contrast":
            return np.eye(3) * d, np.zeros(3)
        if kind == "saturation":
            return np.eye(3) * d + (1.0 - d) * np.tile(self._GRAY, (3, 1)), np.zeros(3)
        u, w = np.cos(d * np.pi), np.sin(d * np.pi)
        bt = np.array([[1.0, 0.0, 0.0], [0.0, u, -w], [0.0, w, u]])
        return self._IYIQ @ bt @ self._YIQ, np.zeros(3)

    def apply(self, sample):
        if self.random_apply:
            kinds = list(np.random.permutation(["brightness", "contrast", "saturation", "hue"]))
            kinds = kinds[:self.count]
        else:
            mode = np.random.randint(0, 2)
            kinds = ["brightness"] + (["contrast", "saturation", "hue"] if mode
                                      else ["saturation", "hue", "contrast"])
        steps = [s for s in map(self._affine, kinds) if s is not None]
        im = sample["image"]
        if steps:
            mat, vec = np.eye(3), np.zeros(3)
            for m, t in steps:
                mat, vec = m @ mat, m @ vec + t
            im = cv2.transform(im.astype(np.float32, copy=False), np.hstack([mat, vec[:, None]]))
        if not self.random_apply and self.random_channel and np.random.randint(0, 2):
            im = im[..., np.random.permutation(3)]
        sample["image"] = im
        return sample


@register
class RandomHSV(BaseOperator):
    """Darknet's colour jitter (cfg keys ``hue``, ``saturation``, ``exposure``), on every sample:
    hue shifted by dh ~ U(-hue, hue) of the hue circle (wrapping), saturation and value
    multiplied by darknet's ``rand_scale``: f ~ U(1, s), inverted with probability 1/2, so f lies
    in [1/s, s] and f and 1/f are equally likely. Draws in darknet's order (hue, saturation,
    exposure). The image (uint8 or float, 0..255 RGB; float input is clipped to that range first)
    goes to float32 HSV with cv2 and back; S and V saturate at their maximum as darknet's OpenCV
    path (uint8 HSV) does. An identity draw (dh 0, both factors 1) leaves the pixels as they are.
    The image becomes float32 in 0..255.

    How it differs from ``RandomDistort`` (PaddleDetection / SSD): that one applies brightness
    (additive), contrast, saturation (a blend with grey) and hue (a YIQ rotation in degrees), each
    with its own probability and range, in random order, as affine maps in RGB, unclipped. Here
    all three always apply, in HSV: hue is a true rotation of the hue angle, saturation and
    exposure are multiplicative and log-symmetric, and the result stays a valid 0..255 image.
    """

    def __init__(self, hue: float = 0.1, saturation: float = 1.5, exposure: float = 1.5):
        scale = (lambda v: 1 <= v < math.inf, ">= 1, factors in [1/s, s]")
        for key, value, (ok, want) in (
                ("hue", hue, (lambda v: 0 <= v <= 0.5, "in [0, 0.5], a fraction of the hue circle")),
                ("saturation", saturation, scale), ("exposure", exposure, scale)):
            if isinstance(value, bool) or not isinstance(value, Number) or not ok(value):
                raise ConfigError(f"RandomHSV: {key} must be a number {want} (darknet's "
                                  f"yolov4.cfg: hue=.1 saturation=1.5 exposure=1.5), got {value!r}")
        self.hue, self.saturation, self.exposure = float(hue), float(saturation), float(exposure)

    @staticmethod
    def rand_scale(s: float) -> float:
        """darknet's rand_scale: U(1, s), inverted half of the time."""
        scale = np.random.uniform(1.0, s)
        return scale if np.random.randint(0, 2) else 1.0 / scale

    def apply(self, sample):
        dhue = np.random.uniform(-self.hue, self.hue)
        dsat, dexp = self.rand_scale(self.saturation), self.rand_scale(self.exposure)
        im = sample["image"]
        if dhue == 0 and dsat == 1 and dexp == 1:
            sample["image"] = im.astype(np.float32, copy=False)
            return sample
        rgb = im if im.dtype == np.uint8 else np.clip(im, 0, 255)
        rgb = cv2.multiply(rgb, (1 / 255,) * 4, dtype=cv2.CV_32F)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # float32: H in [0, 360), S, V in [0, 1]
        # one pass per step (cv2 scalars act per channel); the hue stays in [0, 720), which
        # HSV2RGB wraps (it does not wrap negative hues: a negative shift adds a full turn)
        cv2.multiply(hsv, (1.0, dsat, dexp, 1.0), dst=hsv)
        cv2.add(hsv, (360 * dhue + (360 if dhue < 0 else 0), 0, 0, 0), dst=hsv)
        cv2.min(hsv, (720.0, 1.0, 1.0, 1.0), dst=hsv)  # S and V saturate at 1
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        cv2.multiply(rgb, (255.0,) * 4, dst=rgb)
        sample["image"] = cv2.max(cv2.min(rgb, (255.0,) * 4, dst=rgb), (0.0,) * 4, dst=rgb)
        return sample


@register
class NormalizeImage(BaseOperator):
    """image -> float32 ((image / 255 if is_scale) - mean) / std, per RGB channel
    (``ppdet_lite.runtime.preprocess.NormalizeImage``, which deploy runs too)."""

    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), is_scale: bool = True,
                 norm_type: str = "mean_std"):
        self.op = preprocess.NormalizeImage(mean, std, is_scale, norm_type)
        self.mean, self.std, self.is_scale, self.norm_type = self.op.mean, self.op.std, is_scale, norm_type
        self.chw = None  # a runtime NormalizePermute once loader.build_ops fused the Permute after it

    def apply(self, sample):
        sample["image"], _ = (self.chw or self.op)(sample["image"], sample)
        return sample


@register
class Permute(BaseOperator):
    """image HWC -> CHW (a view; collation makes it contiguous)."""

    def apply(self, sample):
        sample["image"], _ = preprocess.Permute()(sample["image"], sample)
        return sample


@register
class NormalizeBox(BaseOperator):
    """gt_bbox pixels -> fractions of the current image width/height."""

    def apply(self, sample):
        h, w = sample["image"].shape[:2]
        box = sample["gt_bbox"]
        sample["gt_bbox"] = (box / np.array([w, h, w, h], np.float32)).astype(box.dtype)
        return sample


@register
class BboxXYXY2XYWH(BaseOperator):
    """gt_bbox x1,y1,x2,y2 -> cx,cy,w,h (same units)."""

    def apply(self, sample):
        box = sample["gt_bbox"]
        wh = box[:, 2:4] - box[:, :2]
        sample["gt_bbox"] = np.concatenate([box[:, :2] + wh / 2.0, wh], 1).astype(box.dtype)
        return sample


@register
class PadBox(BaseOperator):
    """Pad / truncate to ``num_max_boxes``: gt_bbox [M,4]; gt_class, gt_score, difficult,
    is_crowd become 1-D [M] (as PaddleDetection), zeros in the padding."""

    _FIELDS = (("gt_class", np.int32), ("gt_score", np.float32), ("difficult", np.int32),
               ("is_crowd", np.int32), ("gt_ide", np.int32))

    def __init__(self, num_max_boxes: int = 50):
        self.num_max_boxes = num_max_boxes

    def apply(self, sample):
        m = self.num_max_boxes
        box = sample["gt_bbox"]
        n = min(m, len(box))
        out = np.zeros((m, 4), np.float32)
        out[:n] = box[:n]
        sample["gt_bbox"] = out
        for key, dtype in self._FIELDS:
            if key in sample:
                col = np.zeros(m, dtype)
                col[:n] = np.asarray(sample[key]).reshape(-1)[:n]
                sample[key] = col
        return sample


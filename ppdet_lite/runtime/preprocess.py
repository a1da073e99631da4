"""The one image preprocessing (Resize, LetterBoxResize, NormalizeImage, Permute, PadStride;
PaddleDetection's names and arguments) for training, ``Detector``, Paddle Inference, Paddle Lite
and the HTTP server.

The training transforms in ``ppdet_lite/data`` wrap these ops (and move boxes with the image);
the deploy runtimes build them from the ``Preprocess`` list of ``infer_cfg.yml``. Each op is
``op(im, info) -> (im, info)``: ``im`` is HWC RGB (uint8, float32 after ``Resize``) until
``Permute`` makes it CHW; ``info`` carries ``im_shape`` [h, w] and ``scale_factor`` [sy, sx]
(float32), the two extra inputs of an exported detector.

The rules are those of PaddleDetection's training transforms (ppdet/data/transform/operators.py),
which its evaluation uses: ``keep_ratio`` takes the largest scale that keeps the short side within
min(target_size) and the long side within max(target_size); ``im_shape`` is the scaled size
unrounded. (PaddleDetection's deploy/python/preprocess.py scales the short side first and falls
back to the long side only when the rounded long side overflows, and reports the rounded size;
we use the training rule everywhere.) Normalisation is one float32 multiply-subtract.

``LetterBoxResize`` keeps the aspect ratio and centres the scaled image on a ``fill_value``
canvas of ``target_size`` (darknet's letterbox_image); ``im_shape`` is the scaled content's size,
not the canvas's, as PaddleDetection's LetterBoxResize sets it: the YOLO decodes read the padding
as network input minus ``im_shape``, split evenly (``modeling.post_process.letterbox_correction``).

``build_ops`` (the runtimes' ops, from ``infer_cfg.yml``) fuses what it can without changing a
bit of the result: a resize feeding ``NormalizeImage`` keeps its uint8 output (the float cast
happens once, inside the normalisation), and ``NormalizeImage`` + ``Permute`` become
``NormalizePermute``, one pass from HWC uint8 to a contiguous CHW float32 array.
"""
from numbers import Integral, Number
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from ..core.errors import ConfigError
from .images import ImageLike, read_image

Info = Dict[str, np.ndarray]


def new_info(im: np.ndarray) -> Info:
    """``info`` of an undecoded-size image: ``im_shape`` its (h, w), ``scale_factor`` (1, 1)."""
    return {"im_shape": np.array(im.shape[:2], np.float32), "scale_factor": np.ones(2, np.float32)}


class Resize:
    """Resize to ``target_size`` (h, w), or with ``keep_ratio`` by the largest scale fitting it
    (see the module doc). Sets ``im_shape`` = the scaled (h, w), multiplies ``scale_factor`` by
    (sy, sx). The image becomes float32."""

    def __init__(self, target_size, keep_ratio: bool = True, interp: int = cv2.INTER_LINEAR,
                 to_float: bool = True):
        if isinstance(target_size, Integral):
            target_size = [target_size, target_size]
        if not isinstance(target_size, Sequence) or len(target_size) != 2 or \
                min(target_size) <= 0:
            raise ConfigError(f"Resize: target_size must be an int or [h, w] > 0, got "
                              f"{target_size!r}")
        self.target_size, self.keep_ratio, self.interp = list(target_size), keep_ratio, int(interp)
        self.to_float = to_float  # False: keep the input's dtype (for a normalisation that casts)

    def scales(self, h: int, w: int) -> Tuple[float, float, float, float]:
        """(sy, sx, resized h, resized w) for an ``h`` x ``w`` image."""
        if self.keep_ratio:
            scale = min(min(self.target_size) / min(h, w), max(self.target_size) / max(h, w))
            return scale, scale, scale * h, scale * w
        rh, rw = self.target_size
        return rh / h, rw / w, rh, rw

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        sy, sx, rh, rw = self.scales(*im.shape[:2])
        im = cv2.resize(im, None, None, fx=sx, fy=sy, interpolation=self.interp)
        prev = info.get("scale_factor", np.ones(2, np.float32))
        info["im_shape"] = np.array([rh, rw], np.float32)
        info["scale_factor"] = np.array([prev[0] * sy, prev[1] * sx], np.float32)
        return (im.astype(np.float32, copy=False) if self.to_float else im), info


class LetterBoxResize:
    """Scale by the largest factor that fits ``target_size`` (h, w) keeping the aspect ratio, and
    centre the result on a ``target_size`` canvas of ``fill_value`` (pixel units, one value or
    RGB; darknet's letterbox_image fills 0.5, i.e. 127 here).

    Sizes as darknet: the limiting side becomes the target exactly, the other ``side * target //
    limiting side``; the content sits at (top, left) = ((H - nh) // 2, (W - nw) // 2). Sets
    ``im_shape`` = (nh, nw) (the content, without padding) and multiplies ``scale_factor`` by the
    actual scales (nh / h, nw / w). The image becomes float32 (with ``to_float`` False, which
    ``fuse_ops`` sets before a normalisation: the input's dtype where ``fill_value`` fits it)."""

    def __init__(self, target_size, fill_value=127, interp: int = cv2.INTER_LINEAR,
                 to_float: bool = True):
        size = [target_size] * 2 if isinstance(target_size, Integral) else target_size
        if not isinstance(size, Sequence) or len(size) != 2 or \
                not all(isinstance(v, Integral) and v > 0 for v in size):
            raise ConfigError(f"LetterBoxResize: target_size must be an int or [h, w] of ints > 0, "
                              f"got {target_size!r}")
        self.target_size = [int(v) for v in size]
        fill = [fill_value] * 3 if isinstance(fill_value, Number) else fill_value
        if not isinstance(fill, Sequence) or len(fill) != 3 or \
                not all(isinstance(v, Number) and 0 <= v <= 255 for v in fill):
            raise ConfigError(f"LetterBoxResize: fill_value must be a number or [r, g, b] in "
                              f"0..255, got {fill_value!r}")
        if not isinstance(interp, Integral) or not 0 <= interp <= 4:
            raise ConfigError(f"LetterBoxResize: interp must be a cv2 interpolation 0..4, got "
                              f"{interp!r}")
        self.fill_value = [float(v) for v in fill]
        self.interp, self.to_float = int(interp), to_float

    def layout(self, h: int, w: int) -> Tuple[int, int, int, int]:
        """(nh, nw, top, left): the scaled content's size and its offset on the canvas."""
        th, tw = self.target_size
        if tw / w < th / h:
            nh, nw = max(h * tw // w, 1), tw
        else:
            nh, nw = th, max(w * th // h, 1)
        return nh, nw, (th - nh) // 2, (tw - nw) // 2

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        h, w = im.shape[:2]
        nh, nw, top, left = self.layout(h, w)
        im = cv2.resize(im, (nw, nh), interpolation=self.interp)
        integral = all(v.is_integer() for v in self.fill_value)
        if self.to_float or not (im.dtype == np.uint8 and integral):
            im = im.astype(np.float32, copy=False)
        th, tw = self.target_size
        im = cv2.copyMakeBorder(im, top, th - nh - top, left, tw - nw - left, cv2.BORDER_CONSTANT,
                                value=self.fill_value)
        prev = info.get("scale_factor", np.ones(2, np.float32))
        info["im_shape"] = np.array([nh, nw], np.float32)
        info["scale_factor"] = np.array([prev[0] * nh / h, prev[1] * nw / w], np.float32)
        return im, info


class NormalizeImage:
    """im -> float32 ((im / 255 if is_scale) - mean) / std per channel; ``norm_type`` 'none'
    only scales."""

    def __init__(self, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                 is_scale: bool = True, norm_type: str = "mean_std"):
        if norm_type not in ("mean_std", "none"):
            raise ConfigError(f"NormalizeImage: norm_type must be 'mean_std' or 'none', got "
                              f"{norm_type!r}")
        if np.prod(std) == 0:
            raise ConfigError(f"NormalizeImage: std must be non-zero, got {std}")
        scale = 1.0 / 255.0 if is_scale else 1.0
        mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
        if norm_type == "none":
            mean, std = np.zeros(3), np.ones(3)
        self.mean, self.std, self.is_scale, self.norm_type = list(mean), list(std), is_scale, norm_type
        self._mul = (scale / std).astype(np.float32)  # out = im * mul - sub
        self._sub = (mean / std).astype(np.float32)

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        im = im.astype(np.float32)  # always a fresh array, safe to modify
        im *= self._mul
        im -= self._sub
        return im, info


class Permute:
    """HWC -> CHW (a view; batching copies it)."""

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        return im.transpose(2, 0, 1), info


class NormalizePermute:
    """``NormalizeImage`` then ``Permute`` in one pass: HWC (uint8 or float32) -> contiguous CHW
    float32, bit-equal to the two ops (same float32 multiply, then subtract)."""

    def __init__(self, norm: NormalizeImage):
        self.norm = norm
        self._mul, self._sub = norm._mul[:, None, None], norm._sub[:, None, None]

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        if im.dtype not in (np.uint8, np.float32):  # as NormalizeImage: float32 arithmetic
            im = im.astype(np.float32)
        out = np.empty((im.shape[2], *im.shape[:2]), np.float32)
        np.multiply(cv2.split(im), self._mul, out=out, casting="unsafe")
        out -= self._sub
        return out, info


class PadStride:
    """Zero-pad a CHW image on the bottom/right to a multiple of ``stride`` (0: no padding)."""

    def __init__(self, stride: int = 0):
        self.stride = stride

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        if self.stride <= 0:
            return im, info
        c, h, w = im.shape
        ph, pw = -(-h // self.stride) * self.stride, -(-w // self.stride) * self.stride
        out = np.zeros((c, ph, pw), np.float32)
        out[:, :h, :w] = im
        return out, info


OPS = {"Resize": Resize, "LetterBoxResize": LetterBoxResize, "NormalizeImage": NormalizeImage,
       "Permute": Permute, "PadStride": PadStride}


def build_ops(preprocess_cfg: List[dict], where: str = "infer_cfg.yml", fuse: bool = True) -> list:
    """``Preprocess`` entries (``{type: Name, **kwargs}``) -> op instances; with ``fuse`` (see the
    module doc) the same results in fewer passes."""
    ops = []
    for entry in preprocess_cfg:
        kwargs = dict(entry)
        name = kwargs.pop("type", None)
        if name not in OPS:
            raise ConfigError(f"{where}: Preprocess op {name!r} is not supported here; "
                              f"supported ops: {sorted(OPS)}")
        try:
            ops.append(OPS[name](**kwargs))
        except TypeError as e:
            raise ConfigError(f"{where}: Preprocess op {name} {kwargs}: {e}") from None
    return fuse_ops(ops) if fuse else ops


def fuse_ops(ops: list) -> list:
    """``ops`` with (LetterBox)Resize -> NormalizeImage kept uint8 in between and NormalizeImage +
    Permute as one ``NormalizePermute``."""
    fused = []
    for op in ops:
        prev = fused[-1] if fused else None
        if isinstance(op, NormalizeImage) and isinstance(prev, (Resize, LetterBoxResize)):
            prev.to_float = False
        if isinstance(op, Permute) and isinstance(prev, NormalizeImage):
            fused[-1] = NormalizePermute(prev)
            continue
        fused.append(op)
    return fused


def preprocess(image: ImageLike, ops: list) -> Tuple[np.ndarray, Info]:
    """Read one image (path, bytes or HWC uint8 RGB array) and run ``ops`` -> (CHW, info)."""
    im = read_image(image)
    info = new_info(im)
    for op in ops:
        im, info = op(im, info)
    return im, info


def image_inputs(image: ImageLike, ops: list) -> Dict[str, np.ndarray]:
    """One image (as ``preprocess`` takes it) -> the detector's inputs as a batch of one."""
    im, info = preprocess(image, ops)
    return batch_inputs([im], [info])


def batch_inputs(images: List[np.ndarray], infos: List[Info]) -> Dict[str, np.ndarray]:
    """Stack CHW images (zero-padded to the largest h, w) -> ``image [N,3,H,W]``, ``im_shape [N,2]``,
    ``scale_factor [N,2]``, all float32 (one image: no copy when it is contiguous float32)."""
    if len(images) == 1:
        return {"image": np.ascontiguousarray(images[0][None], np.float32),
                "im_shape": infos[0]["im_shape"][None].astype(np.float32),
                "scale_factor": infos[0]["scale_factor"][None].astype(np.float32)}
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    batch = np.zeros((len(images), images[0].shape[0], h, w), np.float32)
    for i, im in enumerate(images):
        batch[i, :, :im.shape[1], :im.shape[2]] = im
    return {"image": batch,
            "im_shape": np.stack([i["im_shape"] for i in infos]).astype(np.float32),
            "scale_factor": np.stack([i["scale_factor"] for i in infos]).astype(np.float32)}

"""Deploy-time image preprocessing, driven by the ``Preprocess`` list of ``infer_cfg.yml``.

Each op is ``op(im, info) -> (im, info)``: ``im`` is HWC RGB (uint8 or float32) until ``Permute``
makes it CHW float32; ``info`` carries ``im_shape`` [h, w] and ``scale_factor`` [sy, sx] (float32),
the two extra inputs of an exported detector. Only numpy and cv2 are used, so the Paddle Lite runner
(Python 3.10 venv, no paddle) shares this file.
"""
from typing import Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np

Info = Dict[str, np.ndarray]
ImageLike = Union[str, bytes, np.ndarray]


def decode_image(image: ImageLike) -> Tuple[np.ndarray, Info]:
    """A path, encoded bytes or an HWC RGB array -> (HWC uint8 RGB, info for the unresized image)."""
    if isinstance(image, np.ndarray):
        im = image
    else:
        data = np.fromfile(image, np.uint8) if isinstance(image, str) else np.frombuffer(image, np.uint8)
        im = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if im is None:
            raise ValueError(f"cannot decode {'image file ' + image if isinstance(image, str) else 'image bytes'}"
                             ": not a JPEG/PNG/BMP image or the data is truncated")
        im = cv2.cvtColor(im, cv2.COLOR_BGR2RGB)
    if im.ndim != 3 or im.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got an array of shape {im.shape}")
    info = {"im_shape": np.array(im.shape[:2], np.float32),
            "scale_factor": np.ones(2, np.float32)}
    return im, info


class Resize:
    """Resize to ``target_size`` [h, w]; ``keep_ratio`` fits the short/long sides as PaddleDetection."""

    def __init__(self, target_size: Union[int, Sequence[int]], keep_ratio: bool = True,
                 interp: int = cv2.INTER_LINEAR):
        self.target_size = [target_size] * 2 if isinstance(target_size, int) else list(target_size)
        self.keep_ratio = keep_ratio
        self.interp = interp

    def scales(self, h: int, w: int) -> Tuple[float, float]:
        if not self.keep_ratio:
            return self.target_size[0] / h, self.target_size[1] / w
        short, long = min(self.target_size), max(self.target_size)
        scale = short / min(h, w)
        if np.round(scale * max(h, w)) > long:
            scale = long / max(h, w)
        return scale, scale

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        sy, sx = self.scales(*im.shape[:2])
        im = cv2.resize(im, None, None, fx=sx, fy=sy, interpolation=self.interp)
        info["im_shape"] = np.array(im.shape[:2], np.float32)
        info["scale_factor"] = np.array([sy, sx], np.float32)
        return im, info


class NormalizeImage:
    """(im / 255 if is_scale) then (x - mean) / std per channel, in float32."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], is_scale: bool = True,
                 norm_type: str = "mean_std"):
        self.mean = np.asarray(mean, np.float64)  # float64 like PaddleDetection: same rounding
        self.std = np.asarray(std, np.float64)
        self.is_scale = is_scale
        self.norm_type = norm_type

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        im = im.astype(np.float32)
        if self.is_scale:
            im *= np.float32(1.0 / 255.0)
        if self.norm_type == "mean_std":
            im -= self.mean
            im /= self.std
        return im, info


class Permute:
    """HWC -> CHW (contiguous)."""

    def __call__(self, im: np.ndarray, info: Info) -> Tuple[np.ndarray, Info]:
        return np.ascontiguousarray(im.transpose(2, 0, 1)), info


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


OPS = {"Resize": Resize, "NormalizeImage": NormalizeImage, "Permute": Permute,
       "PadStride": PadStride}


def build_ops(preprocess_cfg: List[dict]) -> list:
    """``infer_cfg.yml`` ``Preprocess`` entries (``{type: Name, **kwargs}``) -> op instances."""
    ops = []
    for entry in preprocess_cfg:
        kwargs = dict(entry)
        name = kwargs.pop("type", None)
        if name not in OPS:
            raise ValueError(f"infer_cfg.yml: Preprocess op {name!r} is not supported here; "
                             f"supported ops: {sorted(OPS)}")
        ops.append(OPS[name](**kwargs))
    return ops


def preprocess(image: ImageLike, ops: list) -> Tuple[np.ndarray, Info]:
    """Decode one image and run ``ops`` -> (CHW float32, info)."""
    im, info = decode_image(image)
    for op in ops:
        im, info = op(im, info)
    return im, info


def batch_inputs(images: List[np.ndarray], infos: List[Info]) -> Dict[str, np.ndarray]:
    """Stack CHW images (zero-padded to the largest h, w) -> ``image [N,3,H,W]``, ``im_shape [N,2]``,
    ``scale_factor [N,2]``, all float32."""
    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    batch = np.zeros((len(images), images[0].shape[0], h, w), np.float32)
    for i, im in enumerate(images):
        batch[i, :, :im.shape[1], :im.shape[2]] = im
    return {"image": batch,
            "im_shape": np.stack([i["im_shape"] for i in infos]).astype(np.float32),
            "scale_factor": np.stack([i["scale_factor"] for i in infos]).astype(np.float32)}

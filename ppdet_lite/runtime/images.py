"""Reading and listing images: the one decoder (path, encoded bytes or array -> HWC uint8 RGB)
and the one image lister, for the data pipeline, ``Detector``, the deploy runtimes and tools."""
import os
from typing import List, Union

import cv2
import numpy as np

from ..core.errors import DatasetError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ImageLike = Union[str, os.PathLike, bytes, np.ndarray]


def _decode(data: np.ndarray) -> np.ndarray:
    im = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if im is None else cv2.cvtColor(im, cv2.COLOR_BGR2RGB, dst=im)


def read_image(image: ImageLike) -> np.ndarray:
    """A path, encoded bytes (JPEG/PNG/BMP/WebP) or an HWC uint8 RGB array -> HWC uint8 RGB.

    A missing or undecodable file, bad bytes or a wrong array raise ``DatasetError`` (a
    ``ValueError``) naming the file and what is wrong.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DatasetError(f"expected an HxWx3 uint8 RGB image array, got shape {image.shape} "
                               f"dtype {image.dtype}")
        return image
    if isinstance(image, (bytes, bytearray, memoryview)):
        im = _decode(np.frombuffer(image, np.uint8))
        if im is None:
            raise DatasetError("cannot decode image bytes: not a JPEG/PNG/BMP/WebP image or the "
                               "data is truncated")
        return im
    path = os.fspath(image)
    if not os.path.isfile(path):
        raise DatasetError(f"image {path}: file not found; check the path")
    im = _decode(np.fromfile(path, np.uint8))  # fromfile: non-ASCII paths work too
    if im is None:
        raise DatasetError(f"image {path}: cannot be decoded (corrupt, or not a JPEG/PNG/BMP/WebP "
                           "image); replace or remove it")
    return im


def list_images(path: str, recursive: bool = False) -> List[str]:
    """Image files (``IMAGE_EXTS``, any case) at ``path``, sorted: ``[path]`` for an image file,
    ``[]`` for another file, a directory's images (with ``recursive``, its subdirectories' too).
    ``FileNotFoundError`` when ``path`` does not exist."""
    if os.path.isfile(path):
        return [path] if path.lower().endswith(IMAGE_EXTS) else []
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such image file or directory")
    if not recursive:
        return sorted(os.path.join(path, f) for f in os.listdir(path)
                      if f.lower().endswith(IMAGE_EXTS) and os.path.isfile(os.path.join(path, f)))
    found = []
    for root, _, files in sorted(os.walk(path, followlinks=True)):
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTS)]
    return found

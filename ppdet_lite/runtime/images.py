"""Reading and listing images: the one decoder (path, encoded bytes or array -> HWC uint8 RGB)
and the one image lister, for the data pipeline, ``Detector``, the deploy runtimes and tools."""
import os
import struct
from typing import List, Optional, Tuple, Union

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
        raw = bytes(image)  # no copy for bytes
        im = _decode(np.frombuffer(raw, np.uint8))
        if im is None:
            raise DatasetError("cannot decode image bytes: not a JPEG/PNG/BMP/WebP image or the "
                               "data is truncated")
        why = truncation(raw)
        if why:
            raise DatasetError(f"image bytes: {why}: the data was cut short (an interrupted upload, "
                               "download or copy?); send the whole file")
        return im
    path = os.fspath(image)
    if not os.path.isfile(path):
        raise DatasetError(f"image {path}: file not found; check the path")
    with open(path, "rb") as f:  # (cv2.imread cannot open non-ASCII paths)
        raw = f.read()
    im = _decode(np.frombuffer(raw, np.uint8))
    if im is None:
        raise DatasetError(f"image {path}: cannot be decoded (corrupt, or not a JPEG/PNG/BMP/WebP "
                           "image); replace or remove it")
    _refuse_truncated(path, truncation(raw))
    return im


# A JPEG or PNG cut short (an interrupted download or copy) decodes without an error in OpenCV,
# which fills the missing rows with grey: read_image refuses it by name.
_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_SOS, _EOI = b"\xff\xda", b"\xff\xd9"


def truncation(data: bytes) -> Optional[str]:
    """Why ``data`` (an encoded image) is cut short, or None: a JPEG needs its end-of-image marker
    after its last scan (bytes after it, as some cameras append, are fine), a PNG its IEND chunk."""
    if data[:3] == _JPEG:
        sos = data.rfind(_SOS)
        if sos < 0:
            return "a JPEG without image data (no start-of-scan marker)"
        if data.find(_EOI, sos) < 0:
            return "a truncated JPEG (no end-of-image marker after its image data)"
    elif data[:8] == _PNG and b"IEND" not in data[-4096:]:
        return "a truncated PNG (no IEND chunk)"
    return None


def check_complete(path: str) -> None:
    """``DatasetError`` naming ``path`` when the image file there is cut short (``truncation``),
    without decoding it (the CLIs check their inputs before any work); reads only the last bytes
    of a complete JPEG; a missing file is left to ``read_image``."""
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(os.fstat(f.fileno()).st_size - 2, 0))
        if head[:3] == _JPEG and f.read(2) == _EOI:
            return
        f.seek(0)
        data = f.read()
    _refuse_truncated(path, truncation(data))


def _refuse_truncated(path: str, why: Optional[str]) -> None:
    if why:
        raise DatasetError(f"image {path}: {why}: the file was cut short (an interrupted download or copy?); "
                           "replace it, or remove it from the dataset / input list")


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


def input_images(image_file: Optional[str], image_dir: Optional[str], file_flag: str = "--image_file",
                 dir_flag: str = "--image_dir") -> List[str]:
    """The images a CLI reads: ``image_file`` (wins), else the images directly in ``image_dir``;
    ``DatasetError`` naming the flag when neither gives one."""
    if image_file:
        if not os.path.isfile(image_file):
            raise DatasetError(f"{file_flag} {image_file}: no such file")
        return [image_file]
    if not image_dir:
        raise DatasetError(f"pass {file_flag} FILE or {dir_flag} DIR")
    if not os.path.isdir(image_dir):
        raise DatasetError(f"{dir_flag} {image_dir}: no such directory")
    files = list_images(image_dir)
    if not files:
        raise DatasetError(f"{dir_flag} {image_dir}: no images ({', '.join(IMAGE_EXTS)})")
    return files


def annotated_path(output_dir: str, image: str, inputs) -> str:
    """``output_dir/<name>``, or ``<stem>_det<ext>`` (``_det2``, ...) where that would be one of the
    ``inputs``: an annotated copy never replaces an image being read."""
    protected = {os.path.realpath(p) for p in inputs}
    stem, ext = os.path.splitext(os.path.basename(image))
    candidate, n = os.path.join(output_dir, stem + ext), 1
    while os.path.realpath(candidate) in protected:
        candidate = os.path.join(output_dir, f"{stem}_det{n if n > 1 else ''}{ext}")
        n += 1
    return candidate


def encoded_size(data: bytes) -> Optional[Tuple[int, int]]:
    """``(width, height)`` read from a PNG / JPEG / BMP / WebP header without decoding the pixels,
    or None when the header is not one of those (the decoder then decides). A server checks this
    against its pixel limit before it lets OpenCV allocate the image."""
    head = bytes(data[:32])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return abs(w), abs(h)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        kind = head[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", head[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L" and len(head) >= 25:
            bits = int.from_bytes(head[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(memoryview(data))
    return None


def _jpeg_size(data: memoryview) -> Optional[Tuple[int, int]]:
    """The frame size of the first SOF marker of a JPEG stream, walking the marker segments."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > n:
                return None
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    return None

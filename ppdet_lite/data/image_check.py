"""Truncated-image detection: a JPEG or PNG cut short (an interrupted download or copy) decodes
without an error in OpenCV, which fills the missing rows with grey; training on it silently would
teach the model wrong pixels. ``check_complete(path)`` refuses such a file by name."""
import os
from typing import Optional

from ..core.errors import DatasetError

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
    """``DatasetError`` naming ``path`` when the image file there is cut short (``truncation``).
    Reads only the last bytes of a complete JPEG; a missing file is left to the image reader."""
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(8)
        f.seek(max(os.fstat(f.fileno()).st_size - 2, 0))
        if head[:3] == _JPEG and f.read(2) == _EOI:
            return
        f.seek(0)
        data = f.read()
    why = truncation(data)
    if why:
        raise DatasetError(f"image {path}: {why}: the file was cut short (an interrupted download or copy?); "
                           "replace it, or remove it from the dataset / input list")

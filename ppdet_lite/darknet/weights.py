"""Darknet ``.weights`` files: a header, then float32 blobs in layer order.

Header: int32 major, minor, revision, then ``seen`` (images trained on) as uint64 when
major·10 + minor >= 2, else uint32. Per [convolutional] layer: biases[n], then, with
batch_normalize, scales[n], rolling_mean[n], rolling_variance[n], then weights
[n, c/groups, k, k] (OIHW, as Paddle). This module only reads and writes the container;
``darknet.mapping`` knows which layer owns which floats.
"""
import os
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..core.errors import ConfigError

__all__ = ["WeightsFile", "read_weights", "write_weights"]


@dataclass
class WeightsFile:
    major: int
    minor: int
    revision: int
    seen: int
    data: np.ndarray  # float32, everything after the header

    @property
    def header_bytes(self) -> int:
        return 12 + (8 if self.major * 10 + self.minor >= 2 else 4)


def read_weights(path: str) -> WeightsFile:
    if not os.path.isfile(path):
        raise ConfigError(f"darknet weights {path!r} do not exist")
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 16:
        raise ConfigError(f"{path}: {len(raw)} bytes is too short for a darknet .weights header")
    major, minor, revision = (int(v) for v in np.frombuffer(raw[:12], "<i4"))
    if major * 10 + minor >= 2:
        seen, start = int(np.frombuffer(raw[12:20], "<u8")[0]), 20
    else:
        seen, start = int(np.frombuffer(raw[12:16], "<u4")[0]), 16
    if major > 1000 or minor > 1000 or (len(raw) - start) % 4:
        raise ConfigError(f"{path}: not a darknet .weights file (header {major}.{minor}."
                          f"{revision}, {len(raw) - start} bytes after it)")
    return WeightsFile(major, minor, revision, seen, np.frombuffer(raw[start:], "<f4").copy())


def write_weights(path: str, blobs: Iterable[np.ndarray], seen: int = 0,
                  version=(0, 2, 5)) -> int:
    """Write ``blobs`` (concatenated as float32) after a header; returns the float count."""
    major, minor, revision = version
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    n = 0
    with open(path, "wb") as f:
        f.write(np.array([major, minor, revision], "<i4").tobytes())
        f.write(np.array([seen], "<u8" if major * 10 + minor >= 2 else "<u4").tobytes())
        for blob in blobs:
            arr = np.ascontiguousarray(blob, dtype="<f4").reshape(-1)
            f.write(arr.tobytes())
            n += arr.size
    return n

"""Reading ``.pdparams`` / ``.pdopt`` / ``.pdema`` files without running code from them.

``paddle.save`` writes a pickle of numpy arrays, dicts, lists, strings and numbers. ``pickle.load``
would also import and call whatever a crafted file names (``os.system``, ...), so checkpoints, local
or downloaded, are read with an unpickler that admits only those types; anything else is refused
with the name it asked for, and a file that is empty, cut short or not a pickle says so.
"""
import io
import os
import pickle
from typing import Any

import numpy as np

from ..core.errors import ConfigError

# (module, name) pairs a Paddle checkpoint's pickle may import: numpy's array reconstruction.
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
    # paddle.save writes a non-parameter tensor (optimizer moments, EMA state) as tuple((name, array))
    ("builtins", "tuple"), ("builtins", "list"), ("builtins", "dict"), ("builtins", "set"),
    ("builtins", "frozenset"),
}


class _CheckpointUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise ConfigError(f"{self.path}: refused to load: it asks to import {module}.{name}, which a Paddle "
                          "checkpoint never holds (only numpy arrays, dicts, lists, strings and numbers). "
                          "The file may be crafted to run code; do not load it with pickle or paddle.load.")

    def persistent_load(self, pid):
        raise ConfigError(f"{self.path}: refused to load: it uses pickle persistent ids, which a Paddle "
                          "checkpoint never holds")


def load_checkpoint_file(path: str) -> Any:
    """The object in a ``paddle.save`` file (numpy arrays for tensors); ``ConfigError`` naming ``path``
    and the reason when it is missing, empty, truncated, not a pickle, or asks for anything else."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: no such file")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ConfigError(f"{path}: the file is empty (an interrupted save or copy?); use another checkpoint")
    if data[:1] != b"\x80":
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in data[:64]) else "binary data"
        raise ConfigError(f"{path}: not a Paddle checkpoint (it starts with {kind}, not a pickle written by "
                          "paddle.save)")
    try:
        obj = _CheckpointUnpickler(io.BytesIO(data), path).load()
    except ConfigError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: truncated or corrupt checkpoint ({type(e).__name__}: {e}); "
                          "re-download it or use another checkpoint") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: holds a {type(obj).__name__}, not the dict of arrays paddle.save writes "
                          "for a state dict")
    return _unwrap_tensors(obj)


def _unwrap_tensors(obj: Any) -> Any:
    """paddle.save's ``(name, array)`` pairs of saved tensors -> the arrays, as paddle.load reads them."""
    if isinstance(obj, dict):
        return type(obj)((k, _unwrap_tensors(v)) for k, v in obj.items())
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray):
        return obj[1]
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap_tensors(v) for v in obj)
    return obj

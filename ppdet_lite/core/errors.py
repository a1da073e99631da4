"""The two error types users see: bad configuration and bad data; ``writable_dir``, the check
of an output directory before any work."""
import os
import tempfile


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it and says how to fix it."""


class DatasetError(ValueError):
    """A dataset file, image or annotation is wrong; the message names it and says how to fix it."""


def writable_dir(path: str, flag: str, fix: str = "pass a directory you can write to") -> str:
    """Create ``path`` and check a file can be written there, before any work; else ``ConfigError``
    naming ``flag``, ``path`` and ``fix``. Returns ``path``."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write_test_")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot write there ({e.strerror}); {fix}") from None
    return path

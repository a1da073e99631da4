"""Weights by URL: download once into a cache, or say exactly where to put the file when offline."""
import hashlib
import os
import shutil
import tempfile
import urllib.request
from urllib.parse import urlparse

from ..core.errors import ConfigError
from .logger import get_logger

logger = get_logger(__name__)

WEIGHTS_HOME = os.path.expanduser(os.environ.get("PPDET_LITE_HOME", "~/.cache/ppdet_lite/weights"))


def is_url(path: str) -> bool:
    return str(path).startswith(("http://", "https://"))


def cached_path(url: str, cache_dir: str = None) -> str:
    """Local path of ``url``'s cached copy: ``<cache_dir>/<md5(url)[:8]>_<file name>``."""
    cache_dir = cache_dir or WEIGHTS_HOME
    name = os.path.basename(urlparse(url).path)
    return os.path.join(cache_dir, f"{hashlib.md5(url.encode()).hexdigest()[:8]}_{name}")


def download(url: str, cache_dir: str = None, timeout: float = 30.0) -> str:
    """The cached file for ``url``, downloading it first if needed (atomic: temp file, then rename)."""
    target = cached_path(url, cache_dir)
    if os.path.isfile(target):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    logger.info(f"downloading {url} -> {target}")
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out)
        os.replace(tmp, target)
    except OSError as e:  # URLError and socket timeouts are OSErrors
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ConfigError(
            f"could not download {url} ({e}). If this machine is offline, download the file "
            f"elsewhere and either copy it to {target} or pass its local path instead of the URL "
            f"(e.g. -o pretrain_weights=/path/to/{os.path.basename(target).split('_', 1)[1]}).") from e
    return target

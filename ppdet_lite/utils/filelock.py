"""An exclusive ``flock`` for work that must happen once per machine (a venv, a generated
dataset) when several processes may start it together, e.g. pytest-xdist workers."""
import contextlib
import fcntl
import os

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: str):
    """Hold an exclusive lock on ``path`` (created with its folder) for the block; a second
    process entering it waits until the first leaves. Check again inside for the work done."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

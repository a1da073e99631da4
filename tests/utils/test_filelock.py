"""``file_lock``: a second process waits at the lock until the first leaves it (how two pytest
workers share one Lite venv, effdet venv or generated shapes set)."""
import subprocess
import sys
import time

from ppdet_lite.utils.filelock import file_lock

HOLD = """
import sys, time
from ppdet_lite.utils.filelock import file_lock
with file_lock(sys.argv[1]):
    print("in", flush=True)
    time.sleep(1.0)
"""


def test_second_process_waits_for_the_first(tmp_path):
    path = str(tmp_path / "sub" / "x.lock")  # the folder is created
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "in"
    tic = time.perf_counter()
    with file_lock(path):
        waited = time.perf_counter() - tic
    holder.wait(timeout=30)
    assert waited > 0.5, waited  # it was held for ~1 s after "in"
    with file_lock(path):  # free again once the holder has left
        pass

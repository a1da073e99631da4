"""Stage timers and process memory for the deploy benchmark (``--run_benchmark``), as
PaddleDetection's deploy logs them."""
import time
from typing import Dict


class StageTimer:
    """Accumulates seconds per stage (preprocess / inference / postprocess) and image count."""

    STAGES = ("preprocess", "inference", "postprocess")

    def __init__(self):
        self.total = {s: 0.0 for s in self.STAGES}
        self.calls = {s: 0 for s in self.STAGES}
        self.img_num = 0
        self._start = 0.0

    def start(self) -> None:
        self._start = time.perf_counter()

    def end(self, stage: str, repeats: int = 1) -> None:
        self.total[stage] += time.perf_counter() - self._start
        self.calls[stage] += repeats

    def report(self) -> Dict[str, float]:
        """Milliseconds per call of each stage, their sum, and the image count."""
        ms = {f"{s}_ms": 1000 * self.total[s] / max(self.calls[s], 1) for s in self.STAGES}
        ms["total_ms"] = sum(ms.values())
        ms["img_num"] = self.img_num
        return ms


def process_uss_mb() -> float:
    """Unique set size (private pages) of this process, MB; what PaddleDetection's benchmark
    logs as cpu_rss (psutil uss). 0 where /proc/self/smaps_rollup is missing."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            return sum(int(line.split()[1]) for line in f
                       if line.startswith(("Private_Clean:", "Private_Dirty:"))) / 1024.0
    except OSError:
        return 0.0


def process_memory_mb() -> float:
    """Resident set size of this process, MB."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

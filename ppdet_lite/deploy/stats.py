"""Stage timers and process memory for the deploy benchmark (``--run_benchmark``), as
PaddleDetection's deploy logs them."""
from ..runtime.timing import StageTimer  # noqa: F401  (the one stage timer, paddle-free)


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

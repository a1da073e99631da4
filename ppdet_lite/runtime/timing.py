"""Stage timing of a detector over images (preprocess / inference / postprocess ms per image),
paddle-free so the Paddle Lite venv times its runner with the same code as Paddle Inference and
onnxruntime do in the main environment."""
import time
from typing import Callable, Dict, List, Sequence, Tuple


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


def timed_pass(images: Sequence, preprocess: Callable, infer: Callable, postprocess: Callable,
               warmup: int = 10, repeats: int = 1) -> Tuple[Dict[str, float], List[list]]:
    """Run every image once through ``preprocess(image) -> inputs``, ``infer(inputs, repeats) ->
    outputs`` (the outputs of its last run) and ``postprocess(outputs)``, batch 1, after ``warmup``
    untimed passes on the first image. Returns (``StageTimer.report()``: ms per image and stage,
    inference per run; the ``outputs`` of every image, in order)."""
    timer, outputs_all = StageTimer(), []
    for i, image in enumerate(images):
        for _ in range(warmup if i == 0 else 0):
            postprocess(infer(preprocess(image), 1))
        timer.start()
        inputs = preprocess(image)
        timer.end("preprocess")
        timer.start()
        outputs = infer(inputs, repeats)
        timer.end("inference", repeats)
        timer.start()
        postprocess(outputs)
        timer.end("postprocess")
        timer.img_num += 1
        outputs_all.append(outputs)
    return timer.report(), outputs_all

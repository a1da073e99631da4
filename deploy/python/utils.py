"""Helpers for deploy/python/infer.py: command-line flags, stage timers, memory, image listing,
drawing boxes. Flag names and defaults follow PaddleDetection's deploy/python/utils.py."""
import argparse
import glob
import os
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

IMAGE_EXTS = ("jpg", "jpeg", "png", "bmp")


def str2bool(v) -> bool:
    if isinstance(v, bool):
        return v
    if v.lower() in ("true", "1", "yes", "y"):
        return True
    if v.lower() in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True/False, got {v!r}")


def argsparser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Paddle Inference detector over an exported model dir")
    flag = dict(type=str2bool, nargs="?", const=True, default=False)  # `--x`, `--x True`, `--x=False`
    p.add_argument("--model_dir", required=True,
                   help="dir with model.pdmodel, model.pdiparams and infer_cfg.yml")
    p.add_argument("--image_file", help="one image; wins over --image_dir")
    p.add_argument("--image_dir", help="a directory of jpg/jpeg/png/bmp images")
    p.add_argument("--video_file", help="a video file; wins over images")
    p.add_argument("--camera_id", type=int, default=-1, help="camera device id (-1: none)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--threshold", type=float, default=0.5, help="score threshold for outputs")
    p.add_argument("--output_dir", default="output", help="drawn images and bbox.json go here")
    p.add_argument("--run_mode", default="paddle", choices=["paddle", "trt_fp32", "trt_fp16",
                                                            "trt_int8"])
    p.add_argument("--device", default="CPU", type=str.upper, choices=["CPU", "GPU"])
    p.add_argument("--run_benchmark", **flag, help="time pre/infer/post (50 warm-up, 100 runs)")
    p.add_argument("--enable_mkldnn", **flag, help="oneDNN on CPU")
    p.add_argument("--enable_mkldnn_bfloat16", **flag)
    p.add_argument("--cpu_threads", type=int, default=1)
    p.add_argument("--trt_min_shape", type=int, default=1)
    p.add_argument("--trt_max_shape", type=int, default=1280)
    p.add_argument("--trt_opt_shape", type=int, default=640)
    p.add_argument("--trt_calib_mode", **flag)
    p.add_argument("--save_images", type=str2bool, nargs="?", const=True, default=True,
                   help="write images with drawn boxes to --output_dir")
    p.add_argument("--save_results", **flag, help="write --output_dir/bbox.json")
    return p


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


def list_images(image_file: Optional[str], image_dir: Optional[str]) -> List[str]:
    if image_file:
        if not os.path.isfile(image_file):
            raise FileNotFoundError(f"--image_file {image_file} is not a file")
        return [image_file]
    if not image_dir or not os.path.isdir(image_dir):
        raise FileNotFoundError(f"--image_dir {image_dir} is not a directory (or set --image_file)")
    files = sorted({f for ext in IMAGE_EXTS + tuple(e.upper() for e in IMAGE_EXTS)
                    for f in glob.glob(os.path.join(image_dir, "*." + ext))})
    if not files:
        raise FileNotFoundError(f"no {'/'.join(IMAGE_EXTS)} images in {image_dir}")
    return files


def color_for(class_id: int) -> tuple:
    """A stable bright BGR colour per class."""
    rng = np.random.RandomState(class_id * 7919 + 17)
    return tuple(int(c) for c in rng.randint(64, 256, 3))


def draw_boxes(im_bgr: np.ndarray, boxes: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """Draw ``[K,6]`` rows (class, score, x1, y1, x2, y2) with "label score" captions; BGR in/out."""
    im = im_bgr.copy()
    for cls, score, x1, y1, x2, y2 in boxes.tolist():
        c = int(cls)
        color = color_for(c)
        p1, p2 = (int(round(x1)), int(round(y1))), (int(round(x2)), int(round(y2)))
        cv2.rectangle(im, p1, p2, color, 2)
        text = f"{labels[c] if 0 <= c < len(labels) else c} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(p1[1] - th - base, 0)
        cv2.rectangle(im, (p1[0], top), (p1[0] + tw, top + th + base), color, -1)
        cv2.putText(im, text, (p1[0], top + th), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return im

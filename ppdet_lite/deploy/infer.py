"""Run an exported detector with Paddle Inference on images, a video or a camera.

    python deploy/python/infer.py --model_dir output_inference/ppyolo_tiny_650e_coco \
        --image_file demo.jpg [--device CPU --enable_mkldnn --cpu_threads 2] [--run_benchmark]

Writes images with labelled boxes to --output_dir and, with --save_results, bbox.json
(COCO-style: image_id, category_id, file_name, bbox [x, y, w, h], score). --run_benchmark follows
PaddleDetection: per batch 1 preprocess warm-up, 50 warm-up predictor runs, 100 timed runs, stages
timed separately, process memory reported; it prints one ``BENCHMARK {json}`` line.
Flag names and defaults follow PaddleDetection's deploy/python/utils.py.
"""
import argparse
import json
import os
from typing import List

import cv2
import numpy as np
import yaml

from ..core.errors import ConfigError, writable_dir
from ..export.inference import DEVICES, RUN_MODES
from ..runtime.images import annotated_path, check_complete, input_images, read_image
from ..runtime.result import Detections
from ..utils.cli import ArgumentParser, model_dir_error, run, score_threshold
from ..utils.visualize import draw_boxes
from .predictor import DetectorPredictor
from .stats import StageTimer, process_memory_mb, process_uss_mb

WARMUP, REPEATS = 50, 100


def str2bool(v) -> bool:
    if isinstance(v, bool):
        return v
    if v.lower() in ("true", "1", "yes", "y"):
        return True
    if v.lower() in ("false", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected True/False, got {v!r}")


def argsparser() -> argparse.ArgumentParser:
    p = ArgumentParser(description="Paddle Inference detector over an exported model dir")
    flag = dict(type=str2bool, nargs="?", const=True, default=False)  # `--x`, `--x True`, `--x=False`
    p.add_argument("--model_dir", required=True,
                   help="dir with model.pdmodel, model.pdiparams and infer_cfg.yml")
    p.add_argument("--image_file", help="one image; wins over --image_dir")
    p.add_argument("--image_dir", help="a directory of images (IMAGE_EXTS of ppdet_lite.runtime.images)")
    p.add_argument("--video_file", help="a video file; wins over images")
    p.add_argument("--camera_id", type=int, default=-1, help="camera device id (-1: none)")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--threshold", type=score_threshold, default=0.5, help="score threshold for outputs")
    p.add_argument("--output_dir", default="output", help="drawn images and bbox.json go here")
    p.add_argument("--run_mode", default="paddle", choices=RUN_MODES)
    p.add_argument("--device", default="CPU", type=str.upper, choices=DEVICES)
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


def has_boxes(outputs: List[np.ndarray]) -> bool:
    """True for a full export (bbox [M,6] first); False for export.benchmark's raw head maps."""
    return outputs[0].ndim == 2 and outputs[0].shape[-1] == 6


def predict_images(det: DetectorPredictor, files: List[str], args) -> List[Detections]:
    timer, results, mem = StageTimer(), [], []
    for i in range(0, len(files), det.batch_size):
        batch = files[i:i + det.batch_size]
        if args.run_benchmark:
            det.preprocess(batch)  # warm-up
        timer.start()
        det.preprocess(batch)
        timer.end("preprocess")
        if args.run_benchmark:
            det.run(WARMUP)
            timer.start()
            outputs = det.run(REPEATS)
            timer.end("inference", REPEATS)
        else:
            timer.start()
            outputs = det.run()
            timer.end("inference")
        if not has_boxes(outputs):  # benchmark export: no boxes to post-process or draw
            timer.img_num += len(batch)
            mem.append(process_memory_mb())
            continue
        if args.run_benchmark:
            det.postprocess(outputs, args.threshold, len(batch))  # warm-up
        timer.start()
        batch_results = det.postprocess(outputs, args.threshold, len(batch))
        timer.end("postprocess")
        timer.img_num += len(batch)
        mem.append(process_memory_mb())
        if args.save_images:
            for f, r in zip(batch, batch_results):
                save_drawn(f, r, det.labels, args.output_dir, files)
        results += batch_results
    report(timer, mem, det, args)
    return results


def draw(im_bgr: np.ndarray, det: Detections, labels: List[str]) -> np.ndarray:
    return draw_boxes(im_bgr, det.boxes, det.class_ids, det.scores, labels)


def save_drawn(path: str, det: Detections, labels: List[str], output_dir: str, inputs: List[str]) -> None:
    """The image at ``path`` with ``det`` drawn, into ``output_dir`` (never over one of ``inputs``)."""
    os.makedirs(output_dir, exist_ok=True)
    im = read_image(path)[:, :, ::-1].copy()
    out = annotated_path(output_dir, path, inputs)
    cv2.imwrite(out, draw(im, det, labels))
    print(f"{len(det.scores)} boxes -> {out}")


def report(timer: StageTimer, mem: List[float], det: DetectorPredictor, args) -> None:
    stats = timer.report()
    stats.update(cpu_rss_mb=float(np.mean(mem)) if mem else process_memory_mb(),
                 cpu_uss_mb=process_uss_mb(),
                 model_dir=args.model_dir, batch_size=det.batch_size, device=args.device,
                 run_mode=args.run_mode, enable_mkldnn=args.enable_mkldnn,
                 cpu_threads=args.cpu_threads)
    print("------------------ Inference Time Info ----------------------")
    print(f"images: {stats['img_num']}, total ms/batch: {stats['total_ms']:.2f}, preprocess: "
          f"{stats['preprocess_ms']:.2f}, inference: {stats['inference_ms']:.2f}, postprocess: "
          f"{stats['postprocess_ms']:.2f}, process memory: rss {stats['cpu_rss_mb']:.1f} MB, "
          f"uss {stats['cpu_uss_mb']:.1f} MB")
    if args.run_benchmark:
        print("BENCHMARK " + json.dumps(stats))


def save_results(results: List[Detections], files: List[str], output_dir: str) -> str:
    """bbox.json: COCO results rows, image_id = position in the input list, bbox in xywh."""
    records = []
    for image_id, (r, path) in enumerate(zip(results, files)):
        records += r.coco_records(image_id, os.path.basename(path))
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "bbox.json")
    with open(path, "w") as f:
        json.dump(records, f)
    print(f"{len(records)} boxes saved to {path}")
    return path


def predict_video(det: DetectorPredictor, args) -> str:
    """Detect every frame of --video_file (or --camera_id) and write an annotated mp4."""
    source = args.camera_id if args.camera_id != -1 else args.video_file
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        flag = "--camera_id" if args.camera_id != -1 else "--video_file"
        raise ConfigError(f"{flag} {source}: cannot open this video source (missing, or not a video OpenCV "
                          "can read); check the path or camera id")
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25
    os.makedirs(args.output_dir, exist_ok=True)
    name = "output.mp4" if args.camera_id != -1 else os.path.basename(args.video_file)
    out_path = os.path.join(args.output_dir, os.path.splitext(name)[0] + ".mp4")
    writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    frames = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        found = det.predict([np.ascontiguousarray(frame[:, :, ::-1])], args.threshold)[0]
        writer.write(draw(frame, found, det.labels))
        frames += 1
    cap.release()
    writer.release()
    print(f"{frames} frames -> {out_path}")
    return out_path


def main(argv=None) -> None:
    args = argsparser().parse_args(argv)
    if args.enable_mkldnn_bfloat16 and not args.enable_mkldnn:
        raise ConfigError("--enable_mkldnn_bfloat16 needs --enable_mkldnn: add --enable_mkldnn")
    print("Arguments: " + ", ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))
    for name in ("batch_size", "cpu_threads"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} {getattr(args, name)}: must be >= 1")
    try:
        det = DetectorPredictor(args.model_dir, device=args.device, run_mode=args.run_mode,
                                batch_size=args.batch_size, cpu_threads=args.cpu_threads,
                                enable_mkldnn=args.enable_mkldnn,
                                enable_mkldnn_bfloat16=args.enable_mkldnn_bfloat16,
                                threshold=args.threshold, trt_min_shape=args.trt_min_shape,
                                trt_max_shape=args.trt_max_shape, trt_opt_shape=args.trt_opt_shape,
                                trt_calib_mode=args.trt_calib_mode)
    except (OSError, ValueError, RuntimeError, yaml.YAMLError) as e:  # a missing or broken model dir: one line
        raise model_dir_error(args.model_dir, e) from None
    print(f"Model: arch {det.cfg.arch}, input {det.cfg.input_size}, "
          f"{len(det.labels)} labels, preprocess {[op['type'] for op in det.cfg.preprocess]}")
    if args.video_file or args.camera_id != -1:
        predict_video(det, args)
        return
    files = input_images(args.image_file, args.image_dir)
    if args.save_images or args.save_results:
        writable_dir(args.output_dir, "--output_dir")
    for path in files:  # a file cut short decodes into grey rows: refuse it before any work
        check_complete(path)
    results = predict_images(det, files, args)
    if args.save_results and results:
        save_results(results, files, args.output_dir)


def cli() -> None:
    """``main`` with bad input (flags, model dir, images) as one ``error:`` line and exit code 2."""
    run(main)

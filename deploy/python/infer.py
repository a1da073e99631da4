"""Run an exported detector with Paddle Inference on images, a video or a camera.

    python deploy/python/infer.py --model_dir output_inference/ppyolo_tiny_650e_coco \
        --image_file demo.jpg [--device CPU --enable_mkldnn --cpu_threads 2] [--run_benchmark]

Writes images with labelled boxes to --output_dir and, with --save_results, bbox.json
(COCO-style: image_id, category_id, file_name, bbox [x, y, w, h], score). --run_benchmark follows
PaddleDetection: per batch 1 preprocess warm-up, 50 warm-up predictor runs, 100 timed runs, stages
timed separately, process memory reported; it prints one ``BENCHMARK {json}`` line.
"""
import zlib  # noqa: F401  (import before paddle: Paddle 2.6.2 breaks zlib otherwise)
import json
import os
import sys
from typing import List

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from detector import DetectorPredictor  # noqa: E402
from utils import (StageTimer, argsparser, draw_boxes, list_images, process_memory_mb,  # noqa: E402
                   process_uss_mb)

WARMUP, REPEATS = 50, 100


def has_boxes(outputs: List[np.ndarray]) -> bool:
    """True for a full export (bbox [M,6] first); False for export.benchmark's raw head maps."""
    return outputs[0].ndim == 2 and outputs[0].shape[-1] == 6


def predict_images(det: DetectorPredictor, files: List[str], args) -> List[dict]:
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
        for f, r in zip(batch, batch_results):
            r["file"] = f
            if args.save_images:
                save_drawn(f, r["boxes"], det.labels, args.output_dir)
        results += batch_results
    report(timer, mem, det, args)
    return results


def save_drawn(path: str, boxes: np.ndarray, labels, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    im = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    out = os.path.join(output_dir, os.path.basename(path))
    cv2.imwrite(out, draw_boxes(im, boxes, labels))
    print(f"{len(boxes)} boxes -> {out}")


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


def save_results(results: List[dict], output_dir: str) -> str:
    """bbox.json: one record per box, image_id = position in the input list, bbox in xywh."""
    records = []
    for image_id, r in enumerate(results):
        b = r["boxes"]
        xywh = np.concatenate([b[:, 2:4], b[:, 4:6] - b[:, 2:4]], 1).tolist()
        name = os.path.basename(r["file"])
        records += [{"image_id": image_id, "category_id": int(c), "file_name": name,
                     "bbox": box, "score": float(s)}
                    for c, s, box in zip(b[:, 0].tolist(), b[:, 1].tolist(), xywh)]
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
        raise FileNotFoundError(f"cannot open video source {source!r}")
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
        boxes = det.predict([frame[:, :, ::-1]], args.threshold)[0]["boxes"]
        writer.write(draw_boxes(frame, boxes, det.labels))
        frames += 1
    cap.release()
    writer.release()
    print(f"{frames} frames -> {out_path}")
    return out_path


def main(argv=None) -> None:
    args = argsparser().parse_args(argv)
    if args.enable_mkldnn_bfloat16 and not args.enable_mkldnn:
        raise SystemExit("--enable_mkldnn_bfloat16 needs --enable_mkldnn")
    print("Arguments: " + ", ".join(f"{k}={v}" for k, v in sorted(vars(args).items())))
    det = DetectorPredictor(args.model_dir, device=args.device, run_mode=args.run_mode,
                            batch_size=args.batch_size, cpu_threads=args.cpu_threads,
                            enable_mkldnn=args.enable_mkldnn,
                            enable_mkldnn_bfloat16=args.enable_mkldnn_bfloat16,
                            threshold=args.threshold, trt_min_shape=args.trt_min_shape,
                            trt_max_shape=args.trt_max_shape, trt_opt_shape=args.trt_opt_shape,
                            trt_calib_mode=args.trt_calib_mode)
    print(f"Model: arch {det.cfg.arch}, input {det.cfg.input_size}, "
          f"{len(det.labels)} labels, preprocess {[op['type'] for op in det.cfg.preprocess]}")
    if args.video_file or args.camera_id != -1:
        predict_video(det, args)
        return
    results = predict_images(det, list_images(args.image_file, args.image_dir), args)
    if args.save_results and results:
        save_results(results, args.output_dir)


if __name__ == "__main__":
    main()

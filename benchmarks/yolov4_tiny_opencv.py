"""YOLOv4-tiny CPU latency: our export in Paddle Inference (oneDNN) against OpenCV's DNN on the
same weights, in one run.

    python benchmarks/yolov4_tiny_opencv.py                  # 416 px, 2 threads, 30 rounds (~1 min)
    python benchmarks/yolov4_tiny_opencv.py --size 128 --runs 5 --out output/tiny_cv

One model (``configs/yolov4_tiny.yml``, 80 classes) gets BN-calibrated random weights
(``modeling.random_weights.randomize``) and is written twice under ``--out``:
- ours: PaddleDetection's inference format (``export.jit.export_model``, ``export.nms=False``),
  run by Paddle Inference from the one predictor factory (``export.inference.load_predictor``:
  CPU, oneDNN, ``--cpu_threads``);
- OpenCV: darknet ``.cfg`` + ``.weights`` (``darknet.save_darknet``, as tools/export_darknet.py),
  read by ``cv2.dnn.readNetFromDarknet``, backend OpenCV, target CPU, ``cv2.setNumThreads``.

Like with like: both timed regions take the same float32 blob [1,3,S,S] (RGB in [0, 1]) and end
with numpy arrays of decoded boxes and scores for every anchor position; neither runs NMS (an
export with NMS would time Paddle's multiclass_nms against nothing on OpenCV's side):
- ours: inputs copied in, ``predictor.run()``, ``boxes [1,M,4]`` (x1y1x2y2 px) and ``scores
  [1,80,M]`` copied out (``export.inference.run_inference``): network + YOLOv4Box decode;
- OpenCV: ``net.setInput(blob)``, ``net.forward(the [yolo] layers)`` -> [rows, 85] per layer:
  network + its [yolo] decode (cx, cy, w, h, objectness, obj*cls).

Before timing, the outputs are compared (OpenCV's rows put in our order, its boxes in pixels):
max abs diff of the boxes and of the scores OpenCV keeps (it zeroes obj*cls <= 0.2); above
``BOX_TOL`` / ``SCORE_TOL`` the ratio is flagged as not comparable. Then ``--warmup`` untimed
calls each and ``--runs`` rounds; a round calls both backends once, in alternating order, each
after a ``--gap_ms`` pause (Intel OpenMP's threads spin 200 ms after Paddle's call, KMP_BLOCKTIME,
on the cores OpenCV would use next). Prints median and p90 ms and OpenCV / ours (> 1: ours is
faster), writes ``<out>/yolov4_tiny_opencv.json``. Never fails on a time.
"""
import argparse
import json
import os
import statistics
import time

from ppdet_lite.utils.cli import ArgumentParser, multiple_of, positive_int, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "yolov4_tiny.yml")
STRIDE = 32              # YOLOv4-tiny's deepest stride: the input side is a multiple of it
BOX_TOL = 0.05           # px: oneDNN's and OpenCV's fused convs round differently
SCORE_TOL = 1e-3
OPENCV_SCORE_FLOOR = 0.2  # OpenCV 4.6's [yolo] output zeroes obj*cls at or below this
OURS, OPENCV = "ours (Paddle Inference, oneDNN)", "OpenCV DNN"


input_size = multiple_of(STRIDE, "YOLOv4-tiny's stride", "416 or 320")


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=input_size, default=416, help="input side in pixels (multiple of 32)")
    p.add_argument("--cpu_threads", type=positive_int, default=2, help="threads of each backend")
    p.add_argument("--runs", type=positive_int, default=30, help="timed rounds (one call of each backend)")
    p.add_argument("--warmup", type=positive_int, default=5, help="untimed calls of each backend first")
    p.add_argument("--gap_ms", type=positive_int, default=250, help="idle pause before each timed call")
    p.add_argument("--out", default=os.path.join(ROOT, "output", "yolov4_tiny_opencv"),
                   help="where the exported model, the darknet files and the JSON go")
    return p.parse_args(argv)


def write_model(size: int, out: str):
    """The random-weight model written both ways: (model, exported dir, darknet cfg, .weights)."""
    from ppdet_lite.core.config import load_config
    from ppdet_lite.darknet import save_darknet
    from ppdet_lite.export.jit import export_model
    from ppdet_lite.modeling import build_model
    from ppdet_lite.modeling.random_weights import randomize

    cfg = load_config(CONFIG, [f"TestReader.inputs_def.image_shape=[3,{size},{size}]", "export.nms=False"])
    model = build_model(cfg)
    randomize(model)
    darknet_cfg, weights = os.path.join(out, "yolov4_tiny.cfg"), os.path.join(out, "yolov4_tiny.weights")
    save_darknet(model, darknet_cfg, weights, size, size)
    model_dir = export_model(cfg, out, model=model, labels=[f"class{i}" for i in range(cfg["num_classes"])])
    return model, model_dir, darknet_cfg, weights


def yolo_layer_names(model):
    """OpenCV's names of the [yolo] layers, in our head's level order (matched by anchors)."""
    from ppdet_lite.darknet import describe

    yolos = [lay for lay in describe(model).layers if lay.type == "yolo"]
    return [next(f"yolo_{lay.index}" for lay in yolos
                 if lay.attrs["anchors"] == [[float(v) for v in a] for a in level["anchors"]])
            for level in model.yolo_head.levels]


def output_diff(ours, theirs, levels, size: int) -> dict:
    """OpenCV's [yolo] rows (row, col, anchor; cx, cy, w, h in [0, 1]) against our ``boxes``
    (rows anchor, row, col; x1y1x2y2 px clipped to the image) and ``scores``: max abs diff of the
    boxes (px) and of the scores OpenCV keeps, their count, our largest score where it zeroed."""
    import numpy as np

    boxes, scores = ours[0][0], ours[1][0].T
    rows = [cv.reshape(-1, len(level["anchors"]), cv.shape[1]).transpose(1, 0, 2).reshape(-1, cv.shape[1])
            for cv, level in zip(theirs, levels)]
    cv = np.concatenate(rows)
    if cv.shape != (boxes.shape[0], 5 + scores.shape[1]):
        return {"error": f"OpenCV gives {cv.shape} rows x columns, ours {boxes.shape[0]} boxes and "
                         f"{scores.shape[1]} classes"}
    centre, wh = cv[:, :2] * size, cv[:, 2:4] * size
    xyxy = np.clip(np.concatenate([centre - wh / 2, centre + wh / 2], 1), 0, size - 1)
    kept = cv[:, 5:] > 0
    return {"boxes_px": float(np.abs(xyxy - boxes).max()),
            "scores": float(np.abs(cv[:, 5:] - scores)[kept].max()) if kept.any() else float("inf"),
            "scores_kept": int(kept.sum()),
            "ours_max_where_opencv_zeroed": float(scores[~kept].max()) if (~kept).any() else 0.0}


def differs(diff: dict) -> str:
    """'' when ``output_diff`` says one network computed both outputs, else why not."""
    if "error" in diff:
        return diff["error"]
    if diff["scores_kept"] == 0:
        return f"OpenCV keeps no score above {OPENCV_SCORE_FLOOR}: nothing to compare"
    worse = [f"{k} {diff[k]:.3g} > {tol:g}" for k, tol in (("boxes_px", BOX_TOL), ("scores", SCORE_TOL))
             if not diff[k] <= tol]
    if diff["ours_max_where_opencv_zeroed"] > OPENCV_SCORE_FLOOR + SCORE_TOL:
        worse.append(f"OpenCV zeroed a score of {diff['ours_max_where_opencv_zeroed']:.3g} (ours)")
    return "; ".join(worse)


def timed_rounds(backends: dict, runs: int, warmup: int, gap_s: float) -> dict:
    """ms per call of each backend: ``warmup`` untimed calls each, then ``runs`` rounds calling
    every backend once (order reversed every other round), each call after ``gap_s`` idle."""
    for call in backends.values():
        for _ in range(warmup):
            call()
    times, names = {name: [] for name in backends}, list(backends)
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            time.sleep(gap_s)
            tic = time.perf_counter()
            backends[name]()
            times[name].append((time.perf_counter() - tic) * 1000)
    return times


def main(argv=None) -> None:
    args = parse_args(argv)
    from ppdet_lite.core.errors import writable_dir

    out = writable_dir(os.path.abspath(args.out), "--out")
    import numpy as np
    import paddle
    from ppdet_lite.export.inference import load_predictor, run_inference

    import cv2  # after paddle (ppdet_lite first: zlib)

    load_before = os.getloadavg()
    paddle.set_device("cpu")
    model, model_dir, darknet_cfg, weights = write_model(args.size, out)
    levels, yolo_names = model.yolo_head.levels, yolo_layer_names(model)
    size = args.size
    blob = np.random.RandomState(0).uniform(0, 1, (1, 3, size, size)).astype(np.float32)
    inputs = {"image": blob, "im_shape": np.array([[size, size]], np.float32),
              "scale_factor": np.ones((1, 2), np.float32)}

    predictor, _ = load_predictor(model_dir, cpu_threads=args.cpu_threads, enable_mkldnn=True)
    cv2.setNumThreads(args.cpu_threads)
    net = cv2.dnn.readNetFromDarknet(darknet_cfg, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def opencv():
        net.setInput(blob)
        return net.forward(yolo_names)

    backends = {OURS: lambda: run_inference(predictor, inputs), OPENCV: opencv}
    ours_out, cv_out = backends[OURS](), backends[OPENCV]()
    diff = output_diff(ours_out, cv_out, levels, size)
    why = differs(diff)
    timed = {
        OURS: "copy_from_cpu(image, im_shape, scale_factor) + predictor.run() + copy_to_cpu: network + "
              f"YOLOv4Box decode -> boxes {list(ours_out[0].shape)}, scores {list(ours_out[1].shape)}; "
              "no NMS",
        OPENCV: f"net.setInput(blob) + net.forward({yolo_names}): network + [yolo] decode -> "
                f"{' + '.join(str(list(o.shape)) for o in cv_out)}; no NMS"}
    print(f"model: YOLOv4-tiny {size}x{size}, {ours_out[1].shape[1]} classes, BN-calibrated random weights, "
          f"the same on both sides\n  ours   Paddle {paddle.__version__} Inference, CPU, oneDNN, "
          f"{args.cpu_threads} threads: {model_dir} (export.nms=False)\n  OpenCV {cv2.__version__} DNN, "
          f"backend OpenCV, target CPU, {args.cpu_threads} threads: {darknet_cfg} + .weights")
    print("timed region:\n" + "\n".join(f"  {name}: {what}" for name, what in timed.items()))
    if "error" in diff:
        print(f"outputs: {diff['error']}")
    else:
        print(f"outputs: boxes max abs diff {diff['boxes_px']:.2e} px, scores {diff['scores']:.2e} (on the "
              f"{diff['scores_kept']} scores OpenCV keeps > {OPENCV_SCORE_FLOOR}): "
              + (f"NOT the same network ({why})" if why else "the same network"))

    times = timed_rounds(backends, args.runs, args.warmup, args.gap_ms / 1000)
    load_after = os.getloadavg()
    stats = {name: {"median_ms": statistics.median(t), "p90_ms": float(np.percentile(t, 90)),
                    "times_ms": t, "timed": timed[name]} for name, t in times.items()}
    ratio = stats[OPENCV]["median_ms"] / stats[OURS]["median_ms"]
    per_round = statistics.median(b / a for a, b in zip(times[OURS], times[OPENCV]))
    print(f"\n{'backend':34s} {'median ms':>10s} {'p90 ms':>9s}")
    for name, s in stats.items():
        print(f"{name:34s} {s['median_ms']:10.2f} {s['p90_ms']:9.2f}")
    print(f"OpenCV / ours: {ratio:.2f} (median of per-round ratios {per_round:.2f}; > 1: ours is faster); "
          f"{args.runs} rounds, {args.warmup} warm-up calls, {args.gap_ms} ms gaps; load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} CPUs"
          + (f"  [not comparable: {why}]" if why else ""))
    report = {"model": "yolov4_tiny", "size": size, "cpu_threads": args.cpu_threads, "runs": args.runs,
              "warmup": args.warmup, "gap_ms": args.gap_ms, "paddle": paddle.__version__,
              "opencv": cv2.__version__, "backends": stats, "opencv_over_ours": ratio,
              "opencv_over_ours_per_round": per_round, "output_diff": diff, "same_network": not why,
              "load_average": [load_before[0], load_after[0]], "cpus": os.cpu_count(),
              "model_dir": model_dir, "darknet_cfg": darknet_cfg, "darknet_weights": weights}
    path = os.path.join(out, "yolov4_tiny_opencv.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    run(main)

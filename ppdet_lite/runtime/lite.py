"""The Paddle Lite runner: a ``.nb`` detector on images with the Lite Python runtime (x86 ``.nb``
on a PC), with the preprocessing, threshold rule and result record of every other runtime.

Runs inside the Python 3.10 Lite venv (paddlelite, numpy, opencv-python-headless, PyYAML and this
package installed without dependencies; no paddle):

    ~/.cache/ppdet_lite/lite-venv/bin/python deploy/lite/run_lite.py \
        --lite_dir output_inference/ppyolo_tiny_650e_coco/lite_x86 --image_file demo.jpg \
        [--threshold 0.5] [--save_json out.json] [--run_benchmark]

Prints one line per image; ``--save_json`` writes ``[{"file", "boxes": [[x1, y1, x2, y2], ...],
"scores", "class_ids", "class_names"}]`` (``Detections`` as JSON). ``--inputs_npz IN.npz --outputs_npz OUT.npz`` instead runs the model once on arrays
already preprocessed (one per input name) and saves its raw outputs under their output names, to
compare a ``.nb`` with Paddle Inference tensor by tensor. ``--benchmark_npz OUT.npz [--warmup N
--repeats N]`` times every ``--image_file`` (``timing.timed_pass``) and saves the stage report
(``report``, JSON) and each image's ``bbox_<i>`` / ``bbox_num_<i>`` for mAP. The x86 runtime's
threads are OpenMP's (``OMP_NUM_THREADS``; the Python ``MobileConfig`` has no ``set_threads``).
An arm ``.nb`` loads on x86 but returns zeros: check on x86 with an x86 one.
"""
import argparse
import json
import os
import time

import numpy as np

from .images import ImageLike
from .preprocess import build_ops, image_inputs
from .result import Detections, split_detections
from .timing import timed_pass


class LiteDetector:
    """``model.nb`` + ``infer_cfg.json`` in ``lite_dir`` -> ``predict(image) -> Detections``."""

    def __init__(self, lite_dir: str):
        from paddlelite.lite import MobileConfig, create_paddle_predictor
        with open(os.path.join(lite_dir, "infer_cfg.json")) as f:
            self.cfg = json.load(f)
        self.ops = build_ops(self.cfg.get("Preprocess", []), os.path.join(lite_dir, "infer_cfg.json"))
        self.labels = [str(x) for x in self.cfg.get("label_list", [])]
        config = MobileConfig()
        config.set_model_from_file(os.path.join(lite_dir, "model.nb"))
        self.predictor = create_paddle_predictor(config)
        self.input_names = list(self.predictor.get_input_names())

    def run(self, inputs: dict, repeats: int = 1) -> list:
        for name in self.input_names:
            self.predictor.get_input_by_name(name).from_numpy(inputs[name])
        for _ in range(repeats):
            self.predictor.run()
        n = len(self.predictor.get_output_names())
        return [np.array(self.predictor.get_output(i).numpy()) for i in range(n)]

    def run_npz(self, inputs_npz: str, outputs_npz: str) -> None:
        """Raw outputs of one run on the arrays in ``inputs_npz``, saved by output name."""
        with np.load(inputs_npz) as f:
            inputs = {k: np.ascontiguousarray(f[k]) for k in f.files}
        outputs = self.run(inputs)
        np.savez(outputs_npz, **dict(zip(self.predictor.get_output_names(), outputs)))

    def benchmark(self, images, threshold: float, warmup: int, repeats: int, out_npz: str) -> None:
        """``timed_pass`` over ``images``; the report and every image's outputs -> ``out_npz``."""
        report, outputs = timed_pass(
            images, lambda image: image_inputs(image, self.ops), self.run,
            lambda out: split_detections(out[0], out[1], threshold, self.labels), warmup, repeats)
        arrays = {f"{name}_{i}": out[k] for i, out in enumerate(outputs)
                  for k, name in enumerate(("bbox", "bbox_num"))}
        np.savez(out_npz, report=json.dumps(report), **arrays)

    def predict(self, image: ImageLike, threshold: float) -> Detections:
        """One image -> its ``Detections`` with ``score >= threshold``."""
        bbox, bbox_num = self.run(image_inputs(image, self.ops))[:2]
        return split_detections(bbox, bbox_num, threshold, self.labels)[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Paddle Lite runner for an x86 .nb")
    ap.add_argument("--lite_dir", required=True, help="dir with model.nb and infer_cfg.json")
    ap.add_argument("--image_file", nargs="+", help="images to detect on")
    ap.add_argument("--inputs_npz", help="run once on these preprocessed arrays instead")
    ap.add_argument("--outputs_npz", help="with --inputs_npz: save the raw outputs here")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--save_json", help="write the boxes of every image here")
    ap.add_argument("--run_benchmark", action="store_true", help="10 warm-up + 50 timed runs")
    ap.add_argument("--benchmark_npz", help="time every --image_file; save report and outputs here")
    ap.add_argument("--warmup", type=int, default=10, help="--benchmark_npz: untimed passes")
    ap.add_argument("--repeats", type=int, default=1, help="--benchmark_npz: timed runs per image")
    args = ap.parse_args(argv)
    if bool(args.image_file) == bool(args.inputs_npz) or \
            bool(args.inputs_npz) != bool(args.outputs_npz):
        ap.error("give --image_file, or --inputs_npz with --outputs_npz")
    det = LiteDetector(args.lite_dir)
    if args.inputs_npz:
        det.run_npz(args.inputs_npz, args.outputs_npz)
        return
    if args.benchmark_npz:
        det.benchmark(args.image_file, args.threshold, args.warmup, args.repeats,
                      args.benchmark_npz)
        return
    results = []
    for path in args.image_file:
        found = det.predict(path, args.threshold)
        print(f"{path}: {len(found.scores)} boxes {sorted(set(found.class_names))}")
        results.append({"file": path, **found.to_json()})
    if args.run_benchmark:
        inputs = image_inputs(args.image_file[0], det.ops)
        det.run(inputs, 10)
        t = time.perf_counter()
        det.run(inputs, 50)
        print(f"Lite inference: {(time.perf_counter() - t) * 1000 / 50:.2f} ms/image")
    if args.save_json:
        with open(args.save_json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()

"""Run a Paddle Lite ``.nb`` detector on images with the Lite Python runtime (x86 ``.nb`` on a PC).

Runs inside the Python 3.10 Lite venv made by convert.py (paddlelite, numpy, opencv-python-headless;
no paddle, no ppdet_lite), with the same preprocessing/postprocessing files as deploy/python:

    ~/.cache/ppdet_lite/lite-venv/bin/python deploy/lite/run_lite.py \
        --lite_dir output_inference/ppyolo_tiny_650e_coco/lite_x86 --image_file demo.jpg \
        [--threshold 0.5] [--save_json out.json] [--run_benchmark]

Prints one line per image; ``--save_json`` writes ``[{"file", "boxes": [[class, score, x1, y1, x2,
y2], ...]}]``. ``--inputs_npz IN.npz --outputs_npz OUT.npz`` instead runs the model once on arrays
already preprocessed (one per input name) and saves its raw outputs under their output names, to
compare a ``.nb`` with Paddle Inference tensor by tensor. An arm ``.nb`` loads on x86 but returns
zeros: check on x86 with an x86 one.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from postprocess import split_results  # noqa: E402
from preprocess import batch_inputs, build_ops, preprocess  # noqa: E402


class LiteDetector:
    """``model.nb`` + ``infer_cfg.json`` in ``lite_dir`` -> ``predict(image) -> {"boxes": [K,6]}``."""

    def __init__(self, lite_dir: str):
        from paddlelite.lite import MobileConfig, create_paddle_predictor
        with open(os.path.join(lite_dir, "infer_cfg.json")) as f:
            self.cfg = json.load(f)
        self.ops = build_ops(self.cfg.get("Preprocess", []))
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

    def predict(self, image, threshold: float) -> dict:
        im, info = preprocess(image, self.ops)
        bbox, bbox_num = self.run(batch_inputs([im], [info]))[:2]
        return split_results(bbox, bbox_num, threshold)[0]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Paddle Lite runner for an x86 .nb")
    ap.add_argument("--lite_dir", required=True, help="dir with model.nb and infer_cfg.json")
    ap.add_argument("--image_file", nargs="+", help="images to detect on")
    ap.add_argument("--inputs_npz", help="run once on these preprocessed arrays instead")
    ap.add_argument("--outputs_npz", help="with --inputs_npz: save the raw outputs here")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--save_json", help="write the boxes of every image here")
    ap.add_argument("--run_benchmark", action="store_true", help="10 warm-up + 50 timed runs")
    args = ap.parse_args(argv)
    if bool(args.image_file) == bool(args.inputs_npz) or \
            bool(args.inputs_npz) != bool(args.outputs_npz):
        ap.error("give --image_file, or --inputs_npz with --outputs_npz")
    det = LiteDetector(args.lite_dir)
    if args.inputs_npz:
        det.run_npz(args.inputs_npz, args.outputs_npz)
        return
    results = []
    for path in args.image_file:
        r = det.predict(path, args.threshold)
        labels = det.cfg.get("label_list", [])
        names = [labels[int(c)] if 0 <= int(c) < len(labels) else str(int(c))
                 for c in r["boxes"][:, 0]]
        print(f"{path}: {len(r['boxes'])} boxes {sorted(set(names))}")
        results.append({"file": path, "boxes": r["boxes"].tolist()})
    if args.run_benchmark:
        im, info = preprocess(args.image_file[0], det.ops)
        inputs = batch_inputs([im], [info])
        det.run(inputs, 10)
        t = time.perf_counter()
        det.run(inputs, 50)
        print(f"Lite inference: {(time.perf_counter() - t) * 1000 / 50:.2f} ms/image")
    if args.save_json:
        with open(args.save_json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()

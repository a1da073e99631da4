"""Latency and mAP of one detector on every installed backend:

    python tools/benchmark.py -c configs/ppyolo_tiny_shapes.yml -o weights=output/NAME/best_model \\
        [--cpu_threads 2] [--warmup 10] [--repeats 5] [--output_dir output/benchmark]
    python tools/benchmark.py --model_dir output_inference/ppyolo_tiny [-c CONFIG: its EvalDataset]

``-c`` exports the model once (``ppdet_lite.export``) into ``<output_dir>/<config name>``;
``--model_dir`` takes any exported dir (ours or PaddleDetection's deploy format) and is only read.
Backends: Paddle Inference FP32 with oneDNN off and on, Paddle Inference INT8 (PTQ of the FP32
model calibrated on TrainDataset: needs -c), onnxruntime (paddle2onnx), Paddle Lite x86 FP32 and
INT8 (the Lite venv's runner, a subprocess). Each runs the same pass (``runtime.timing.timed_pass``)
over EvalDataset's images (one synthetic image without -c): preprocessing from ``infer_cfg.yml``,
batch 1, ``--repeats`` inference runs per image, postprocess to ``Detections``; the outputs of each
image give COCO mAP. Prints one table (a backend that cannot run says why in its row) and writes
``<output_dir>/benchmark.png`` (latency vs mAP) and ``benchmark.json``.
"""
import json
import os
import subprocess
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..core.errors import ConfigError
from ..utils.cli import ArgsParser, model_dir_error, run

BACKENDS = ("paddle", "paddle_mkldnn", "paddle_int8", "onnxruntime", "lite_fp32", "lite_int8")
TITLES = {"paddle": "Paddle Inference FP32", "paddle_mkldnn": "Paddle Inference FP32 oneDNN",
          "paddle_int8": "Paddle Inference INT8 oneDNN", "onnxruntime": "ONNX Runtime FP32",
          "lite_fp32": "Paddle Lite x86 FP32", "lite_int8": "Paddle Lite x86 INT8"}
NOTES = {"paddle_int8": "PTQ; int8 ops run as quantize/dequantize in FP32 (no enable_mkldnn_int8)",
         "onnxruntime": "paddle2onnx opset 11",
         "lite_fp32": "threads = OMP_NUM_THREADS", "lite_int8": "PTQ; threads = OMP_NUM_THREADS"}
NMS_OPS = ("multiclass_nms3", "multiclass_nms", "matrix_nms")

Pass = Tuple[Dict[str, float], List[list]]  # timed_pass's (report, outputs per image)


class Unavailable(Exception):
    """A backend that cannot run here or cannot run this model; the message says why."""


class Bench:
    """What every backend shares: the FP32 model dir, images, settings, and the PTQ model made
    on first use."""

    def __init__(self, fp32_dir: str, deploy, work: str, images: List[str], cfg, args):
        self.fp32_dir, self.deploy, self.work, self.images, self.cfg = fp32_dir, deploy, work, images, cfg
        self.threads, self.warmup, self.repeats = args.cpu_threads, args.warmup, args.repeats
        self.calib_images = args.calib_images
        self.threshold = self.deploy.draw_threshold
        self._int8: Optional[str] = None

    def int8_dir(self) -> str:
        """The PTQ int8 model of ``fp32_dir`` (slim.quant.PTQ, defaults of PaddleDetection's
        configs), calibrated on the first ``--calib_images`` TrainDataset images preprocessed as
        deployed; made once."""
        if self._int8:
            return self._int8
        if self.cfg is None or not self.cfg.get("TrainDataset"):
            raise Unavailable("needs -c with a TrainDataset for calibration images")
        from ..data.builder import parsed_dataset
        from ..deploy.predictor import DetectorPredictor
        from ..slim.quant import PTQ

        files = [r["im_file"] for r in parsed_dataset(self.cfg, "TrainDataset").roidbs]
        det = DetectorPredictor(self.fp32_dir)
        batches = [det.preprocess([f]) for f in files[:self.calib_images]]
        ptq = PTQ(quant_batch_num=len(batches))
        self._int8 = ptq.quantize(self.fp32_dir, os.path.join(self.work, "int8"), batches)
        return self._int8

    def paddle(self, model_dir: str, mkldnn: bool) -> Pass:
        from ..deploy.predictor import DetectorPredictor
        from ..runtime.timing import timed_pass

        det = DetectorPredictor(model_dir, cpu_threads=self.threads, enable_mkldnn=mkldnn)
        return timed_pass(self.images, lambda im: det.preprocess([im]), lambda _, n: det.run(n),
                          lambda out: det.postprocess(out, self.threshold, 1), self.warmup,
                          self.repeats)

    def onnxruntime(self) -> Pass:
        from ..export.onnx_export import check_convertible, export_onnx
        from ..runtime.preprocess import build_ops, image_inputs
        from ..runtime.result import split_detections
        from ..runtime.timing import timed_pass

        try:
            import onnxruntime as ort
            import paddle2onnx  # noqa: F401
        except ImportError as e:
            raise Unavailable(f"{e.name} is not installed (pip install onnxruntime paddle2onnx)")
        try:
            check_convertible(self.fp32_dir)
        except ConfigError as e:
            raise Unavailable(str(e))
        # no one-image check against Paddle Inference: the mAP column compares them on the set
        path = export_onnx(self.fp32_dir, os.path.join(self.work, "model.onnx"), check=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        sess = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        names = [i.name for i in sess.get_inputs()]
        ops = build_ops(self.deploy.preprocess)

        def infer(inputs, repeats):
            for _ in range(repeats):
                outputs = sess.run(None, {n: inputs[n] for n in names})
            return outputs

        return timed_pass(self.images, lambda image: image_inputs(image, ops), infer,
                          lambda out: split_detections(out[0], out[1], self.threshold,
                                                       self.deploy.label_list),
                          self.warmup, self.repeats)

    def lite(self, model_dir: str, name: str) -> Pass:
        """Convert ``model_dir`` to an x86 ``.nb``, time it in the Lite venv (``runtime.lite
        --benchmark_npz``, ``OMP_NUM_THREADS`` threads)."""
        from ..export import lite

        try:
            python = os.path.join(lite.lite_venv(), "bin", "python")
        except lite.LiteUnavailable as e:
            raise Unavailable(f"LiteUnavailable: {e}")
        nb_dir = lite.convert(model_dir, "x86", os.path.join(self.work, name))
        out = os.path.join(self.work, f"{name}.npz")
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        proc = subprocess.run([python, "-m", "ppdet_lite.runtime.lite", "--lite_dir", nb_dir,
                               "--benchmark_npz", out, "--warmup", str(self.warmup),
                               "--repeats", str(self.repeats), "--threshold", str(self.threshold),
                               "--image_file", *self.images],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"Lite runner exit {proc.returncode}: "
                               f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        with np.load(out) as f:
            outputs = [[f[f"bbox_{i}"], f[f"bbox_num_{i}"]] for i in range(len(self.images))]
            return json.loads(str(f["report"])), outputs

    def measure(self, backend: str) -> Pass:
        if backend in ("paddle", "paddle_mkldnn"):
            return self.paddle(self.fp32_dir, backend == "paddle_mkldnn")
        if backend == "paddle_int8":
            return self.paddle(self.int8_dir(), True)
        if backend == "onnxruntime":
            return self.onnxruntime()
        return self.lite(self.fp32_dir if backend == "lite_fp32" else self.int8_dir(), backend)


def eval_map(dataset, images_ids: List[int], outputs: List[list]) -> Dict[str, float]:
    """COCO AP / AP50 of one ``outputs`` per image of the parsed EvalDataset (``bbox``, ``bbox_num``)."""
    from ..metrics.coco_metric import COCOMetric

    metric = COCOMetric.for_dataset(dataset)
    for im_id, out in zip(images_ids, outputs):
        metric.update({"bbox": out[0], "bbox_num": out[1]}, np.array([[im_id]]))
    stats = metric.accumulate()
    return {"AP": stats["AP"], "AP50": stats["AP50"]}


def eval_images(cfg, labels: List[str]) -> Tuple[Any, List[str], List[int]]:
    """The parsed EvalDataset, its image files and ids; ConfigError unless it is a COCO-style set
    whose classes are the model's."""
    from ..data.builder import parsed_dataset

    if cfg.get("metric", "COCO") != "COCO":
        raise ConfigError(f"{cfg.source('metric')}: metric {cfg['metric']}: the benchmark "
                          "measures COCO mAP only")
    ds = parsed_dataset(cfg, "EvalDataset")
    if len(ds.catid2clsid) != len(labels):
        raise ConfigError(f"EvalDataset has {len(ds.catid2clsid)} classes, the model "
                          f"{len(labels)} labels: give the -c the model was trained with")
    return ds, [r["im_file"] for r in ds.roidbs], [int(np.asarray(r["im_id"]).reshape(-1)[0])
                                                   for r in ds.roidbs]


def synthetic_image(size: Optional[List[int]], work: str) -> str:
    """A PNG of smooth colour blobs at the model's input size (320 when dynamic), for latency
    without a dataset."""
    h, w = size or [320, 320]
    rng = np.random.RandomState(0)
    im = cv2.resize(rng.randint(0, 255, (6, 8, 3)).astype(np.uint8), (w, h),
                    interpolation=cv2.INTER_CUBIC)
    path = os.path.join(work, "synthetic.png")
    cv2.imwrite(path, im)
    return path


def nms_place(model_dir: str) -> str:
    """Where NMS runs: the NMS op of the program, or 'not in the model'."""
    from ..export.inference import model_files
    from ..export.program_edit import program_ops

    found = [op for op in NMS_OPS if op in program_ops(model_files(model_dir)[0])]
    return f"inside the model ({found[0]})" if found else "not in the model (raw outputs)"


def table(rows: List[Dict[str, Any]]) -> str:
    from ..metrics.plots import format_table

    cells = []
    for r in rows:
        if "reason" in r:
            cells.append([r["backend"], "-", "-", "-", "-", "-", "-", "not run: " + r["reason"]])
        else:
            cells.append([r["backend"], *(f"{r[k]:.2f}" for k in ("preprocess_ms", "inference_ms",
                                                                   "postprocess_ms", "total_ms")),
                          *(f"{r[k]:.3f}" if k in r else "n/a" for k in ("AP", "AP50")),
                          r.get("note", "")])
    return format_table(["backend", "pre ms", "infer ms", "post ms", "total ms", "mAP", "AP50",
                         "note"], cells)


def reason_of(e: Exception) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if isinstance(e, Unavailable) else f"{type(e).__name__}: {line}"


def parse_args(argv=None):
    import argparse

    p = ArgsParser(config_required=False, description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", help="an exported model dir instead of exporting -c's model")
    p.add_argument("--output_dir", default="output/benchmark", help="exports, table and chart")
    p.add_argument("--backends", default=",".join(BACKENDS),
                   help=f"comma-separated subset of {','.join(BACKENDS)}")
    p.add_argument("--cpu_threads", type=int, default=1, help="threads of every backend")
    p.add_argument("--warmup", type=int, default=10, help="untimed passes on the first image")
    p.add_argument("--repeats", type=int, default=5, help="timed inference runs per image")
    p.add_argument("--calib_images", type=int, default=32, help="PTQ calibration images")
    args = p.parse_args(argv)
    for name in ("cpu_threads", "repeats", "calib_images"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} {getattr(args, name)}: must be >= 1")
    if args.warmup < 0:
        raise ConfigError(f"--warmup {args.warmup}: must be >= 0")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        raise ConfigError(f"--backends {args.backends!r}: expected a comma-separated subset of "
                          f"{','.join(BACKENDS)}")
    args.backends = backends
    if not args.config and not args.model_dir:
        raise ConfigError("give -c CONFIG (exported here, mAP on its EvalDataset) or --model_dir DIR")
    if args.opt and not args.config:
        raise ConfigError("-o overrides need -c CONFIG")
    return args


def load_model_dir(args, cfg):
    """(dir, its DeployConfig): ``--model_dir`` checked, or ``-c``'s model exported into
    ``<output_dir>``."""
    from ..deploy.predictor import DeployConfig
    from ..export.inference import model_files

    if args.model_dir:
        path = args.model_dir
    else:
        from ..export.jit import export_model

        if not cfg.get("weights"):
            raise ConfigError(f"{args.config}: no weights to export: pass -o weights=<.pdparams>")
        path = export_model(cfg, os.path.join(args.output_dir, "fp32"))
    try:
        model_files(path)
        return path, DeployConfig.load(path)
    except (FileNotFoundError, ValueError) as e:
        raise model_dir_error(path, e) from None


def main(argv=None) -> List[Dict[str, Any]]:
    args = parse_args(argv)
    cfg = None
    if args.config:
        from ..core.config import load_config

        if not os.path.isfile(args.config):
            raise ConfigError(f"-c {args.config}: no such file")
        cfg = load_config(args.config, args.opt)
        cfg["use_gpu"] = False
    os.makedirs(args.output_dir, exist_ok=True)
    model_dir, deploy = load_model_dir(args, cfg)
    if cfg is not None and cfg.get("EvalDataset"):
        dataset, images, im_ids = eval_images(cfg, deploy.label_list)
    else:
        dataset, images, im_ids = None, [synthetic_image(deploy.input_size, args.output_dir)], []
    bench = Bench(model_dir, deploy, args.output_dir, images, cfg, args)
    rows = []
    for backend in args.backends:
        print(f"--- {TITLES[backend]}", flush=True)
        row: Dict[str, Any] = {"backend": TITLES[backend], "note": NOTES.get(backend, "")}
        try:
            report, outputs = bench.measure(backend)
            row.update(report)
            if im_ids:
                row.update(eval_map(dataset, im_ids, outputs))
        except Exception as e:  # noqa: BLE001  a backend that fails says why in its row
            row["reason"] = row["note"] = reason_of(e)
        rows.append(row)
    print(f"\nmodel {model_dir}: input {deploy.input_size or 'dynamic'}, NMS "
          f"{nms_place(model_dir)}; {len(images)} image(s) "
          f"({'EvalDataset' if im_ids else 'synthetic, no mAP'}), batch 1, {args.cpu_threads} "
          f"thread(s), {args.warmup} warm-up passes, {args.repeats} inference runs per image "
          "(ms per image; inference per run)")
    print(table(rows))
    write_outputs(rows, args.output_dir, bool(im_ids))
    return rows


def write_outputs(rows: List[Dict[str, Any]], out_dir: str, with_map: bool) -> None:
    """``benchmark.json`` (the rows) and ``benchmark.png`` (total ms vs mAP; mAP 0 without one)."""
    from ..metrics.plots import plot_points

    with open(os.path.join(out_dir, "benchmark.json"), "w") as f:
        json.dump(rows, f, indent=2)
    points = [(r["backend"], r["total_ms"], r.get("AP", 0.0)) for r in rows if "reason" not in r]
    png = plot_points(points, os.path.join(out_dir, "benchmark.png"), "total ms per image",
                      "mAP", "latency vs mAP" if with_map else "latency (no eval set: mAP n/a)")
    print(f"chart: {png}\nrows: {os.path.join(out_dir, 'benchmark.json')}")


def cli() -> None:
    run(main)


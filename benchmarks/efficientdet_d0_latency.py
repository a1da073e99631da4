"""EfficientDet-D0 CPU latency: our export in Paddle Inference (oneDNN) against effdet in PyTorch and
against onnxruntime, on the same weights, in one run.

    python -m tests.oracles.effdet_env                            # once: the effdet side venv (~2 min)
    python benchmarks/efficientdet_d0_latency.py                  # 512 px, 2 threads, 20 rounds (~2 min)
    python benchmarks/efficientdet_d0_latency.py --size 128 --runs 3 --out output/effdet_lat

One model (``configs/efficientdet_d0.yml``, 90 classes) gets BN-calibrated random weights
(``modeling.random_weights.randomize``, calibrated at the benchmark size on images normalised
with the config's TestReader mean/std, ``P7_VALUES`` per channel at the deepest level: fewer, and
the random net's outputs grow to 1e6 and more) and runs three ways:
- ours: ``paddle.jit`` export of the raw head (``exclude_post_process``), run by Paddle Inference
  from the one predictor factory (``export.inference.load_predictor``: CPU, oneDNN, ``--threads``);
- onnxruntime: that export converted by ``export.onnx_export.export_onnx`` (paddle2onnx),
  CPUExecutionProvider, ``intra_op_num_threads=--threads``, all graph optimisations;
- PyTorch: effdet's ``tf_efficientdet_d0`` (``create_model``, pretrained=False) with our weights
  under effdet's names (the inverse of ``modeling.effdet_convert``'s mapping), in a persistent
  worker process of the effdet side venv (``benchmarks/effdet_torch_worker.py``), eval mode,
  ``torch.set_num_threads(--threads)``, ``torch.inference_mode()``.

Like with like: every timed call takes the same float32 image [1,3,S,S] (ImageNet-normalised) and
ends with numpy arrays of the 10 raw head maps (class logits [1,9*90,S/s,S/s] and box codes
[1,9*4,S/s,S/s] for strides 8..128): network only, no anchor decode, no NMS. (An export with
``export.nms=False`` would add the decode, which effdet has no all-anchor form of; raw maps need no
EfficientDet ``exclude_nms`` switch, so the benchmark runs whether or not the architecture has it.)
- ours: ``copy_from_cpu`` + ``predictor.run()`` + ``copy_to_cpu`` (``export.inference.run_inference``);
- onnxruntime: ``session.run(None, {"image": x})``;
- PyTorch: ``torch.from_numpy`` + ``model(x)`` + ``.numpy()``, timed inside the worker (the pipe's
  round trip is not in it).

Before timing, the outputs are compared map by map (matched by shape): max abs diff of the class
logits and of the box codes, ours against each; above ``REL_TOL`` of the largest |value| a ratio
is flagged as not comparable. Then ``--warmup`` untimed calls each and ``--runs`` rounds; a round
calls the three once, in an order rotated every round, each after a ``--gap_ms`` pause (Intel
OpenMP's threads spin 200 ms after Paddle's call, KMP_BLOCKTIME, on the cores the next backend
would use; the torch worker waits on its pipe, idle). Prints median and p90 ms and torch / ours,
onnxruntime / ours (> 1: ours is faster), says which backend is fastest, writes
``<out>/efficientdet_d0_latency.json``. Never fails on a time.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from ppdet_lite.utils.cli import ArgumentParser, multiple_of, positive_int, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "efficientdet_d0.yml")
WORKER = os.path.join(ROOT, "benchmarks", "effdet_torch_worker.py")
EFFDET_MODEL = "tf_efficientdet_d0"
STRIDE = 128             # P7's stride: effdet wants the input side a multiple of it
REL_TOL = 1e-5           # max abs diff / the largest |value| (float32 through ~100 layers: ~1e-6)
P7_VALUES = 32           # BN calibration: images enough for this many values per channel at P7
OURS, ORT, TORCH = "ours (Paddle Inference, oneDNN)", "onnxruntime", "effdet (PyTorch)"


input_size = multiple_of(STRIDE, "EfficientDet's P7 stride", "512 or 256")


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=input_size, default=512, help="input side in pixels (multiple of 128)")
    p.add_argument("--threads", type=positive_int, default=2, help="threads of each backend")
    p.add_argument("--runs", type=positive_int, default=20, help="timed rounds (one call of each backend)")
    p.add_argument("--warmup", type=positive_int, default=3, help="untimed calls of each backend first")
    p.add_argument("--gap_ms", type=positive_int, default=250, help="idle pause before each timed call")
    p.add_argument("--effdet_python", default=None,
                   help="Python of a venv with torch + effdet 0.4.1 (default: tests/oracles/effdet_env.py's)")
    p.add_argument("--out", default=os.path.join(ROOT, "output", "efficientdet_d0_latency"),
                   help="where the export, the ONNX file, the weights and the JSON go")
    return p.parse_args(argv)


def effdet_python(given) -> str:
    """The side venv's Python: ``given``, else what ``python -m tests.oracles.effdet_env`` reports
    (without building: that takes ~2 min and 5.5 GB, the user runs it once)."""
    from ppdet_lite.core.errors import ConfigError

    if given:
        if not os.access(given, os.X_OK):
            raise ConfigError(f"--effdet_python {given}: not an executable")
        return given
    env = dict(os.environ, PPDET_EFFDET_BUILD="0")
    proc = subprocess.run([sys.executable, "-m", "tests.oracles.effdet_env"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ConfigError(f"no effdet side venv ({(lines or [proc.stderr.strip()[-200:]])[-1]}); build it once "
                          "with `python -m tests.oracles.effdet_env` (~2 min), or pass --effdet_python")
    return lines[-1]


class TorchWorker:
    """effdet in ``benchmarks/effdet_torch_worker.py`` under ``python``: ``request(cmd, ...)`` ->
    its JSON reply; its stderr goes to ``log``."""

    def __init__(self, python: str, size: int, threads: int, log: str):
        from ppdet_lite.core.errors import ConfigError

        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        env.pop("PYTHONPATH", None)
        self.log_path, self.log = log, open(log, "w")
        self.proc = subprocess.Popen([python, WORKER, "--model", EFFDET_MODEL, "--size", str(size),
                                      "--threads", str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.keys = self._reply().get("keys")
        if self.keys is None:
            raise ConfigError(f"the effdet worker under {python} did not start; see {log}")

    def _reply(self) -> dict:
        from ppdet_lite.core.errors import ConfigError

        line = self.proc.stdout.readline()
        if not line:
            self.log.flush()
            with open(self.log_path) as f:
                tail = f.read()[-1500:]
            raise ConfigError(f"the effdet worker exited ({self.log_path}): {tail}")
        reply = json.loads(line)
        if "error" in reply:
            raise ConfigError(f"the effdet worker failed: {reply['error']}\n{reply.get('trace', '')}")
        return reply

    def request(self, cmd: str, **kwargs) -> dict:
        self.proc.stdin.write(json.dumps(dict(cmd=cmd, **kwargs)) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
        self.log.close()


def normalization(cfg):
    """(mean, std) of the config's TestReader ``NormalizeImage`` (pixels scaled to [0, 1] first)."""
    for op in cfg["TestReader"]["sample_transforms"]:
        if "NormalizeImage" in op:
            return op["NormalizeImage"]["mean"], op["NormalizeImage"]["std"]
    raise ValueError(f"{CONFIG}: TestReader has no NormalizeImage")


def build_ours(size: int):
    """The random-weight model, its (mean, std) and its numpy state_dict."""
    from ppdet_lite.core.config import load_config
    from ppdet_lite.modeling import build_model
    from ppdet_lite.modeling.random_weights import randomize

    cfg = load_config(CONFIG, [f"TestReader.inputs_def.image_shape=[3,{size},{size}]"])
    model = build_model(cfg)
    mean, std = normalization(cfg)
    batch = -(-P7_VALUES // (size // STRIDE) ** 2)  # 2 at 512 px; a 1x1 P7 at 128 px needs 32
    randomize(model, size=size, batch=batch, mean=mean, std=std)
    return model, (mean, std), {k: v.numpy() for k, v in model.state_dict().items()}


def effdet_weights(model, state: dict, keys: dict) -> dict:
    """``state`` (ours) under effdet's names ``keys`` ({name: shape}): ``effdet_convert``'s own
    mapping read backwards, by converting tensors filled with their index."""
    import numpy as np

    from ppdet_lite.modeling.effdet_convert import convert_effdet_state_dict

    names = [k for k in keys if not k.endswith("num_batches_tracked")]
    probe = {k: np.full(keys[k], i, np.float32) for i, k in enumerate(names)}
    ours_of = {names[int(v.flat[0])]: ours for ours, v in convert_effdet_state_dict(probe, model).items()}
    return {k: state[ours_of[k]] for k in names}


def export_ours(model, size: int, out: str) -> str:
    """``paddle.jit`` export of the raw head maps (input ``image`` only) to ``<out>/model``; its dir."""
    from ppdet_lite.export.jit import save_inference_model

    model.eval()
    model.exclude_post_process = True
    model_dir = os.path.join(out, "model")
    os.makedirs(model_dir, exist_ok=True)
    save_inference_model(model, os.path.join(model_dir, "model"), [1, 3, size, size])
    return model_dir


def by_shape(maps) -> dict:
    """{shape: array} of the raw maps (every level's class and box maps have their own shape)."""
    return {tuple(m.shape): m for m in maps}


def output_diff(ours: list, theirs: list) -> dict:
    """Max abs diff of the class logits and of the box codes (the maps with fewer channels: 4 per
    anchor against num_classes), maps matched by shape; the largest |value| of ours for scale and
    the ratio of the two (``*_rel``)."""
    import numpy as np

    a, b = by_shape(ours), by_shape(theirs)
    if len(a) != len(ours) or set(a) != set(b):
        return {"error": f"map shapes differ: ours {sorted(a)}, theirs {sorted(b)}"}
    diff = {"cls": 0.0, "box": 0.0, "cls_max_abs": 0.0, "box_max_abs": 0.0}
    box_channels = min(shape[1] for shape in a)
    for shape, m in a.items():
        kind = "box" if shape[1] == box_channels else "cls"
        diff[kind] = max(diff[kind], float(np.abs(m - b[shape]).max()))
        diff[kind + "_max_abs"] = max(diff[kind + "_max_abs"], float(np.abs(m).max()))
    for kind in ("cls", "box"):
        diff[kind + "_rel"] = diff[kind] / max(diff[kind + "_max_abs"], 1.0)
    return diff


def differs(diff: dict) -> str:
    """'' when ``output_diff`` says one network computed both outputs, else why not."""
    if "error" in diff:
        return diff["error"]
    return "; ".join(f"{k} {diff[k]:.3g} is {diff[k + '_rel']:.2g} of the largest |value| > {REL_TOL:g}"
                     for k in ("cls", "box") if not diff[k + "_rel"] <= REL_TOL)


def timed_rounds(backends: dict, runs: int, warmup: int, gap_s: float) -> dict:
    """ms per call of each backend (each callable runs once and returns its ms): ``warmup``
    untimed calls each, then ``runs`` rounds calling every backend once (order rotated by one
    every round), each call after ``gap_s`` idle."""
    for call in backends.values():
        for _ in range(warmup):
            call()
    times, names = {name: [] for name in backends}, list(backends)
    for r in range(runs):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            time.sleep(gap_s)
            times[name].append(backends[name]())
    return times


def timer(call):
    """A callable running ``call()`` once and returning its ms."""
    def timed() -> float:
        tic = time.perf_counter()
        call()
        return (time.perf_counter() - tic) * 1000
    return timed


def main(argv=None) -> None:
    args = parse_args(argv)
    from ppdet_lite.core.errors import writable_dir

    out = writable_dir(os.path.abspath(args.out), "--out")
    python = effdet_python(args.effdet_python)
    import numpy as np
    import onnxruntime as ort
    import paddle
    from ppdet_lite.export.inference import load_predictor, run_inference
    from ppdet_lite.export.onnx_export import export_onnx

    load_before = os.getloadavg()
    worker = TorchWorker(python, args.size, args.threads, os.path.join(out, "effdet_worker.log"))
    try:
        paddle.set_device("cpu")
        size = args.size
        model, (mean, std), state = build_ours(size)
        num_classes = model.head.num_classes
        weights = os.path.join(out, "effdet_weights.npz")
        np.savez(weights, **effdet_weights(model, state, worker.keys))
        model_dir = export_ours(model, size, out)
        onnx_path = export_onnx(model_dir, check=False)

        rng = np.random.RandomState(0)
        pixels = rng.uniform(0, 1, (1, 3, size, size))
        image = ((pixels - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))).astype(np.float32)
        image_npz, torch_npz = os.path.join(out, "image.npz"), os.path.join(out, "effdet_outputs.npz")
        np.savez(image_npz, image=image)
        versions = worker.request("load", weights=weights, input=image_npz, outputs=torch_npz)

        predictor, config = load_predictor(model_dir, cpu_threads=args.threads, enable_mkldnn=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
        feed = {"image": image}

        ours_out = run_inference(predictor, feed)
        ort_out = session.run(None, feed)
        with np.load(torch_npz) as f:
            torch_out = [f[k] for k in f.files]
        diffs = {TORCH: output_diff(ours_out, torch_out),
                 ORT: output_diff(ours_out, ort_out)}
        why = {name: differs(d) for name, d in diffs.items()}

        backends = {OURS: timer(lambda: run_inference(predictor, feed)),
                    ORT: timer(lambda: session.run(None, feed)),
                    TORCH: lambda: worker.request("run")["ms"]}
        maps = f"{len(ours_out)} raw head maps ({', '.join(str(list(m.shape)) for m in ours_out[:2])}, ...)"
        timed = {OURS: f"copy_from_cpu(image) + predictor.run() + copy_to_cpu -> {maps}; no decode, no NMS",
                 ORT: f"session.run(None, {{'image': x}}) -> {maps}; no decode, no NMS",
                 TORCH: f"torch.from_numpy + model(x) (inference_mode) + .numpy() -> {maps}; no decode, "
                        "no NMS; timed inside the worker"}
        print(f"model: EfficientDet-D0 {size}x{size}, {num_classes} classes, BN-calibrated random weights, "
              f"the same on all three\n"
              f"  ours         Paddle {paddle.__version__} Inference, CPU, oneDNN "
              f"{'on' if config.mkldnn_enabled() else 'OFF'}, {args.threads} threads: {model_dir}\n"
              f"  onnxruntime  {ort.__version__}, CPUExecutionProvider, {args.threads} intra-op threads, "
              f"ORT_ENABLE_ALL: {onnx_path}\n"
              f"  PyTorch      torch {versions['torch']}, effdet {versions['effdet']} (timm {versions['timm']}) "
              f"{EFFDET_MODEL}, {versions['threads']} threads, eval, inference_mode: {python}")
        print("timed region:\n" + "\n".join(f"  {name}: {what}" for name, what in timed.items()))
        for name, d in diffs.items():
            if "error" in d:
                print(f"outputs, ours vs {name}: {d['error']}")
            else:
                print(f"outputs, ours vs {name}: class logits max abs diff {d['cls']:.2e} (|max| "
                      f"{d['cls_max_abs']:.1f}: {d['cls_rel']:.1e} of it), box codes {d['box']:.2e} (|max| "
                      f"{d['box_max_abs']:.1f}: {d['box_rel']:.1e}): "
                      + (f"NOT the same network ({why[name]})" if why[name] else "the same network"))

        times = timed_rounds(backends, args.runs, args.warmup, args.gap_ms / 1000)
    finally:
        worker.close()
    load_after = os.getloadavg()
    stats = {name: {"median_ms": statistics.median(t), "p90_ms": float(np.percentile(t, 90)),
                    "times_ms": t, "timed": timed[name]} for name, t in times.items()}
    ratios = {name: stats[name]["median_ms"] / stats[OURS]["median_ms"] for name in (TORCH, ORT)}
    per_round = {name: statistics.median(b / a for a, b in zip(times[OURS], times[name])) for name in ratios}
    print(f"\n{'backend':34s} {'median ms':>10s} {'p90 ms':>9s}")
    for name, s in stats.items():
        print(f"{name:34s} {s['median_ms']:10.2f} {s['p90_ms']:9.2f}")
    for name, short in ((TORCH, "torch"), (ORT, "onnxruntime")):
        print(f"{short} / ours: {ratios[name]:.2f} (median of per-round ratios {per_round[name]:.2f}; > 1: ours "
              "is faster)" + (f"  [not comparable: {why[name]}]" if why[name] else ""))
    fastest = min(stats, key=lambda n: stats[n]["median_ms"])
    print(("ours is the fastest" if fastest == OURS else f"ours is NOT the fastest: {fastest} is "
           f"({stats[fastest]['median_ms']:.2f} vs {stats[OURS]['median_ms']:.2f} ms median)")
          + f"; {args.runs} rounds, {args.warmup} warm-up calls, {args.gap_ms} ms gaps; load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} CPUs")
    report = {"model": "efficientdet_d0", "effdet_model": EFFDET_MODEL, "size": size, "threads": args.threads,
              "runs": args.runs, "warmup": args.warmup, "gap_ms": args.gap_ms, "paddle": paddle.__version__,
              "onnxruntime": ort.__version__, "torch": versions["torch"], "effdet": versions["effdet"],
              "mkldnn": bool(config.mkldnn_enabled()), "backends": stats,
              "torch_over_ours": ratios[TORCH], "ort_over_ours": ratios[ORT],
              "torch_over_ours_per_round": per_round[TORCH], "ort_over_ours_per_round": per_round[ORT],
              "fastest": fastest, "output_diff": diffs, "same_network": {n: not w for n, w in why.items()},
              "load_average": [load_before[0], load_after[0]], "cpus": os.cpu_count(),
              "model_dir": model_dir, "onnx": onnx_path, "effdet_weights": weights}
    path = os.path.join(out, "efficientdet_d0_latency.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    run(main)

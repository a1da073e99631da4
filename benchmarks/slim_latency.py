"""PP-YOLO Tiny CPU latency of pruning and INT8: FP32 unpruned vs pruned vs PTQ int8, in Paddle
Inference (oneDNN) and Paddle Lite x86, in one run.

    python benchmarks/slim_latency.py                       # 320 px, 2 threads, 15 rounds (~2 min)
    python benchmarks/slim_latency.py --size 160 --runs 3 --no_lite --out output/slim_latency_small

One model (``configs/ppyolo_tiny.yml``, 80 classes) with BN-calibrated random weights
(``modeling.random_weights.randomize``), exported with ``export.nms=False`` (network + box decode,
every candidate, no NMS) three ways under ``--out``:
- ``fp32``: as built;
- ``pruned``: the same weights pruned by our concat-aware ``slim.prune.Pruner`` with
  ``configs/slim/prune/ppyolo_tiny_shapes_prune_fpgm.yml``'s layers and ratios (FPGM);
- ``int8``: ``slim.PTQ`` of ``fp32`` (HistQuantizer 0.999, quantize_linear format) calibrated on
  ``--calib`` random images.
FLOPs are ``engine.model_stats.count_flops`` (PaddleSlim's, post-process excluded), params
``count_params``.

Paddle Inference: the one predictor factory (``export.inference.load_predictor``, CPU, oneDNN,
``--threads``); one more row runs the int8 model with ``config.enable_mkldnn_int8()`` (a copy of
the factory's config), its candidates compared with the int8 model's without it. Paddle Lite:
each dir converted to an x86 ``.nb`` (``export.lite.convert``; int8 with its x86 kernel-bug
workarounds) and timed by this file's ``--lite_worker`` mode inside the Lite venv
(``export.lite_opt.lite_venv``, ``OMP_NUM_THREADS=--threads``).

Timing, on each side: outputs compared first, then ``--warmup`` untimed calls each and
``--runs`` rounds calling every model once (order reversed every other round), each call after a
``--gap_ms`` pause (Intel OpenMP threads spin 200 ms after a call). Median and p90 ms, the
ratios unpruned / pruned and int8 / fp32. Then a per-op profile of the Paddle Inference
predictors (``paddle.profiler``, ``--profile_runs`` alternating runs, per-op medians; Lite's pip
wheel has no profiler) and the work in each exported program (conv multiply-adds by kind,
elements written by the other ops) say where the time goes.
Writes ``<out>/slim_latency.json``. Never fails on a time.
"""
import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import tempfile
import time

from ppdet_lite.utils.cli import ArgumentParser, multiple_of, positive_int, run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "ppyolo_tiny.yml")
PRUNE_CONFIG = os.path.join(ROOT, "configs", "slim", "prune", "ppyolo_tiny_shapes_prune_fpgm.yml")
STRIDE = 32
FP32, PRUNED, INT8, INT8_VNNI = "FP32", "FP32 pruned", "INT8", "INT8 +enable_mkldnn_int8"


input_size = multiple_of(STRIDE, "PP-YOLO Tiny's stride", "320")


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split("\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", type=input_size, default=320, help="input side in pixels (multiple of 32)")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads of every runtime")
    p.add_argument("--runs", type=positive_int, default=15, help="timed rounds (one call of each model)")
    p.add_argument("--warmup", type=positive_int, default=3, help="untimed calls of each model first")
    p.add_argument("--gap_ms", type=positive_int, default=250, help="idle pause before each timed call")
    p.add_argument("--calib", type=positive_int, default=4, help="PTQ calibration images")
    p.add_argument("--profile_runs", type=positive_int, default=5,
                   help="profiled runs per predictor (per-op median)")
    p.add_argument("--no_lite", action="store_true", help="skip Paddle Lite x86")
    p.add_argument("--out", default=os.path.join(ROOT, "output", "slim_latency"),
                   help="where the exported models, .nb files and the JSON go")
    p.add_argument("--lite_worker", help=argparse.SUPPRESS)  # internal: a spec JSON, in the Lite venv
    return p.parse_args(argv)


# --- paddle-free: used by both sides (the Lite venv has no paddle) ---------------------------

def timed_rounds(calls: dict, runs: int, warmup: int, gap_s: float) -> dict:
    """ms per call of each ``calls[name]()``: ``warmup`` untimed calls each, then ``runs`` rounds
    calling every one once (order reversed every other round), each after ``gap_s`` idle."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times, names = {name: [] for name in calls}, list(calls)
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            time.sleep(gap_s)
            tic = time.perf_counter()
            calls[name]()
            times[name].append((time.perf_counter() - tic) * 1000)
    return times


def summary(times: dict) -> dict:
    """{name: {median_ms, p90_ms, times_ms}}."""
    def p90(t):
        s = sorted(t)
        return s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
    return {n: {"median_ms": statistics.median(t), "p90_ms": p90(t), "times_ms": t} for n, t in times.items()}


def lite_worker(spec_path: str) -> None:
    """Inside the Lite venv: each ``.nb`` of the spec run once on its inputs (outputs saved),
    then timed; the times -> ``spec['times_json']``."""
    import numpy as np

    from ppdet_lite.runtime.lite import LiteDetector

    with open(spec_path) as f:
        spec = json.load(f)
    with np.load(spec["inputs_npz"]) as f:
        inputs = {k: np.ascontiguousarray(f[k]) for k in f.files}
    dets = {name: LiteDetector(d) for name, d in spec["models"].items()}
    outs = {}
    for name, det in dets.items():
        for k, a in enumerate(det.run(inputs)):
            outs[f"{name}|{k}"] = a
    np.savez(spec["outputs_npz"], **outs)
    times = timed_rounds({n: (lambda d=d: d.run(inputs)) for n, d in dets.items()}, spec["runs"],
                         spec["warmup"], spec["gap_ms"] / 1000)
    with open(spec["times_json"], "w") as f:
        json.dump(times, f)


# --- main side (paddle) ----------------------------------------------------------------------

def small_head_outputs(model, scale: float = 0.05) -> None:
    """Head output convs scaled down: random head maps are large enough for the box decode's
    exp() to reach inf, which PTQ's activation histograms refuse."""
    import paddle

    with paddle.no_grad():
        for name, p in model.named_parameters():
            if "yolo_output" in name:
                p.set_value(p.numpy() * scale)


def build_models(size: int, out: str, calib: int):
    """Export fp32, pruned and int8 dirs; -> ({name: dir}, {name: {flops, params}}, prune report)."""
    import numpy as np

    from ppdet_lite import build_model
    from ppdet_lite.core.config import load_config
    from ppdet_lite.engine.model_stats import count_flops, count_params
    from ppdet_lite.export.jit import export_model
    from ppdet_lite.modeling.random_weights import randomize
    from ppdet_lite.slim import PTQ
    from ppdet_lite.slim.prune import Pruner

    shape = (3, size, size)
    cfg = load_config(CONFIG, [f"TestReader.inputs_def.image_shape=[3,{size},{size}]",
                               "export.nms=False", "use_gpu=False"])
    dirs, stats = {}, {}
    pruner = Pruner(**load_config(PRUNE_CONFIG)["Pruner"])
    # the same random weights twice, one model at a time (export fuses BNs in place, and two
    # live models' fused parameters collide in paddle.jit.save)
    for name, sub in ((FP32, "fp32"), (PRUNED, "pruned")):
        model = build_model(cfg)
        randomize(model, seed=0, shift=(0.2, 0.4))  # a less chaotic random net: int8 comparable
        small_head_outputs(model)
        if name == PRUNED:
            pruner(model, shape)
        stats[name] = {"flops": count_flops(model, shape), "params": count_params(model)}
        cfg["filename"] = sub
        dirs[name] = export_model(cfg, out, model=model)
        del model
    rng = np.random.RandomState(0)
    batches = [{"image": rng.normal(0, 1, (1, 3, size, size)).astype("float32"),
                "im_shape": np.array([[size, size]], "float32"),
                "scale_factor": np.ones((1, 2), "float32")} for _ in range(calib)]
    ptq = PTQ({"activation_quantizer": "HistQuantizer", "hist_percent": 0.999}, quant_batch_num=calib)
    dirs[INT8] = ptq.quantize(dirs[FP32], os.path.join(out, "int8"), batches)
    stats[INT8] = dict(stats[FP32])
    return dirs, stats, pruner.report


def candidates_agree(ref, out, top: int = 50) -> dict:
    """``ref``'s ``top`` best candidates (boxes [1,M,4], scores [1,nc,M]) against ``out``'s same
    candidates: IoU min / mean, |score diff| mean / max, same best class."""
    import numpy as np

    from ppdet_lite.runtime.boxes import box_iou

    (rb, rs), (ob, os_) = ref[:2], out[:2]
    idx = np.argsort(-rs[0].max(0))[:top]
    iou = np.diag(box_iou(rb[0, idx], ob[0, idx], eps=1e-9))
    ds = np.abs(rs[0][:, idx] - os_[0][:, idx])
    same = rs[0][:, idx].argmax(0) == os_[0][:, idx].argmax(0)
    return {"iou_min": float(iou.min()), "iou_mean": float(iou.mean()), "score_diff_mean": float(ds.mean()),
            "score_diff_max": float(ds.max()), "same_class": float(same.mean())}


PROFILE_ROW = re.compile(r"^(\S+)\s+(\d+)\s+([\d.]+) / ")


def profile_ops(predictor, inputs: dict) -> dict:
    """{op type: ms} of one run of a Paddle Inference predictor under ``paddle.profiler`` (CPU;
    its operator summary's top-level rows, profiling overhead included)."""
    import io

    import paddle.profiler as profiler

    from ppdet_lite.export.inference import run_inference

    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU])
    prof.start()
    run_inference(predictor, inputs)
    prof.stop()
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        prof.summary(op_detail=False, sorted_by=profiler.SortedKeys.CPUTotal, time_unit="ms")
    ops, in_operators = {}, False
    for line in text.getvalue().splitlines():
        if "Operator Summary" in line:
            in_operators = True
        elif in_operators and ("Summary" in line and "Operator" not in line):
            break
        m = PROFILE_ROW.match(line) if in_operators else None
        if m and not m.group(1).startswith(("feed", "fetch")):
            ops[m.group(1)] = ops.get(m.group(1), 0.0) + float(m.group(3))
    return ops


def profiled_rounds(preds: dict, inputs: dict, runs: int, gap_s: float) -> dict:
    """{name: {op type: median ms over ``runs`` profiled runs}}, the predictors alternating (as
    ``timed_rounds``), each run after ``gap_s`` idle."""
    sessions = {name: [] for name in preds}
    timed_rounds({n: (lambda n=n, p=p: sessions[n].append(profile_ops(p, inputs))) for n, p in preds.items()},
                 runs, 0, gap_s)
    return {n: {op: statistics.median(r.get(op, 0.0) for r in rs) for op in set().union(*rs)}
            for n, rs in sessions.items()}


def program_work(model_dir: str) -> dict:
    """Work by kind in an exported program (static shapes, batch 1): multiply-adds of the
    depthwise / 1x1 / kxk convs (``conv MACs <kind>``) and output elements written by every other
    op type (``<op> elements``: what memory-bound ops cost), plus ``<op> ops`` counts."""
    import numpy as np

    from ppdet_lite.export.program_edit import read_program_desc

    block = read_program_desc(os.path.join(model_dir, "model.pdmodel")).blocks[0]
    dims = {v.name: [abs(d) for d in v.type.lod_tensor.tensor.dims] for v in block.vars}
    work = {}

    def add(key, value):
        work[key] = work.get(key, 0) + int(value)

    for op in block.ops:
        if op.type in ("feed", "fetch"):
            continue
        ins = {i.parameter: list(i.arguments) for i in op.inputs}
        outs = [a for o in op.outputs for a in o.arguments if a in dims]
        add(f"{op.type} ops", 1)
        if op.type in ("conv2d", "depthwise_conv2d", "fused_conv2d"):
            groups = next((a.i for a in op.attrs if a.name == "groups"), 1)
            f, o = dims[ins["Filter"][0]], dims[op.outputs[0].arguments[0]]
            kind = "depthwise" if groups > 1 else ("1x1" if f[2] * f[3] == 1 else "kxk")
            add(f"conv MACs {kind}", np.prod(f) * o[2] * o[3])
        elif outs:
            add(f"{op.type} elements", sum(np.prod(dims[a]) for a in outs[:1]))
    return work


def paddle_inference(dirs: dict, inputs: dict, args, out: str) -> dict:
    """Time fp32 / pruned / int8 (and int8 with enable_mkldnn_int8) in Paddle Inference."""
    from paddle.inference import Config, create_predictor

    from ppdet_lite.export.inference import load_predictor, run_inference

    preds, configs = {}, {}
    for name in (FP32, PRUNED, INT8):
        preds[name], configs[name] = load_predictor(dirs[name], cpu_threads=args.threads, enable_mkldnn=True)
    vnni = Config(configs[INT8])
    vnni.enable_mkldnn_int8()
    preds[INT8_VNNI] = create_predictor(vnni)
    outs = {n: run_inference(p, inputs) for n, p in preds.items()}
    agree = {f"{INT8} vs {FP32}": candidates_agree(outs[FP32], outs[INT8]),
             f"{INT8_VNNI} vs {INT8}": candidates_agree(outs[INT8], outs[INT8_VNNI]),
             f"{INT8_VNNI} vs {FP32}": candidates_agree(outs[FP32], outs[INT8_VNNI])}
    times = timed_rounds({n: (lambda p=p: run_inference(p, inputs)) for n, p in preds.items()},
                         args.runs, args.warmup, args.gap_ms / 1000)
    profiles = profiled_rounds(preds, inputs, args.profile_runs, args.gap_ms / 1000)
    return {"stats": summary(times), "agreement": agree, "profile_ms_per_run": profiles}


def paddle_lite(dirs: dict, inputs: dict, args, out: str) -> dict:
    """Convert to x86 .nb and time them in the Lite venv (``--lite_worker``)."""
    import numpy as np

    from ppdet_lite.export import lite
    from ppdet_lite.export.lite_opt import lite_venv

    nbs = {name: lite.convert(dirs[name], "x86", os.path.join(out, f"lite_x86_{sub}"),
                              cpu_threads=args.threads)
           for name, sub in ((FP32, "fp32"), (PRUNED, "pruned"), (INT8, "int8"))}
    python = os.path.join(lite_venv(), "bin", "python")
    spec = {"models": nbs, "inputs_npz": os.path.join(out, "lite_inputs.npz"),
            "outputs_npz": os.path.join(out, "lite_outputs.npz"),
            "times_json": os.path.join(out, "lite_times.json"),
            "runs": args.runs, "warmup": args.warmup, "gap_ms": args.gap_ms}
    np.savez(spec["inputs_npz"], **inputs)
    spec_path = os.path.join(out, "lite_spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    subprocess.run([python, os.path.abspath(__file__), "--lite_worker", spec_path], check=True,
                   env=env, cwd=tempfile.gettempdir())
    with open(spec["times_json"]) as f:
        times = json.load(f)
    with np.load(spec["outputs_npz"]) as f:
        outs = {name: [f[f"{name}|{k}"] for k in range(2)] for name in nbs}
    agree = {f"{INT8} vs {FP32}": candidates_agree(outs[FP32], outs[INT8])}
    sizes = {n: os.path.getsize(os.path.join(d, "model.nb")) for n, d in nbs.items()}
    return {"stats": summary(times), "agreement": agree, "nb_bytes": sizes}


def print_table(title: str, stats: dict, sizes: dict) -> None:
    print(f"\n{title}\n{'model':26s} {'GFLOPs':>7s} {'params M':>9s} {'median ms':>10s} {'p90 ms':>8s}")
    for name, s in stats.items():
        size = sizes.get(name.split(" +")[0], {})
        print(f"{name:26s} {size.get('flops', 0) / 1e9:7.3f} {size.get('params', 0) / 1e6:9.3f} "
              f"{s['median_ms']:10.2f} {s['p90_ms']:8.2f}")
    pairs = {"unpruned / pruned": (FP32, PRUNED), "int8 / fp32": (INT8, FP32),
             "int8 enable_mkldnn_int8 / fp32": (INT8_VNNI, FP32)}
    r, per_round = {}, {}
    for key, (a, b) in pairs.items():
        if a in stats and b in stats:
            r[key] = stats[a]["median_ms"] / stats[b]["median_ms"]
            per_round[key] = statistics.median(x / y for x, y in
                                               zip(stats[a]["times_ms"], stats[b]["times_ms"]))
    print("  ratios of medians: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))
    print("  medians of per-round ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in per_round.items()))
    stats["ratios"], stats["per_round_ratios"] = r, per_round


def print_profile(profiles: dict) -> None:
    """Op types by FP32 time (median ms of the profiled runs), with pruned and int8 ms and
    the FP32 / pruned ratio."""
    names = sorted(set().union(*profiles.values()), key=lambda n: -profiles[FP32].get(n, 0))
    print(f"\nPaddle Inference per-op profile (ms per run)\n{'op':34s} {'FP32':>7s} {'pruned':>7s} "
          f"{'ratio':>6s} {'INT8':>7s} {'+int8':>7s}")
    for n in names:
        a, b, c, d = (profiles[k].get(n, 0.0) for k in (FP32, PRUNED, INT8, INT8_VNNI))
        if max(a, b, c, d) < 0.05:
            continue
        print(f"{n:34s} {a:7.2f} {b:7.2f} {(a / b if b else float('nan')):6.2f} {c:7.2f} {d:7.2f}")
    print(f"{'sum':34s} " + " ".join(f"{sum(profiles[k].values()):7.2f}" for k in (FP32, PRUNED))
          + f" {'':6s} " + " ".join(f"{sum(profiles[k].values()):7.2f}" for k in (INT8, INT8_VNNI)))


def print_work(work: dict) -> None:
    """Conv MACs by kind and elements written by the other op types, FP32 vs pruned."""
    a, b = work[FP32], work[PRUNED]
    keys = sorted((k for k in a if not k.endswith(" ops")), key=lambda k: (not k.startswith("conv"), -a[k]))
    print(f"\nwork in the exported programs (batch 1)\n"
          f"{'kind':34s} {'FP32':>12s} {'pruned':>12s} {'ratio':>6s}")
    for k in keys[:16]:
        print(f"{k:34s} {a[k]:12,d} {b.get(k, 0):12,d} {a[k] / max(b.get(k, 0), 1):6.2f}")
    q = {k: v for k, v in work[INT8].items() if k.endswith(" ops") and "quant" in k}
    print(f"ops: FP32 {sum(v for k, v in a.items() if k.endswith(' ops'))}, pruned "
          f"{sum(v for k, v in b.items() if k.endswith(' ops'))}, INT8 "
          f"{sum(v for k, v in work[INT8].items() if k.endswith(' ops'))} ({q})")


def cpu_flags() -> list:
    """The VNNI / AMX / AVX-512 flags of /proc/cpuinfo (what oneDNN int8 kernels can use)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next(line for line in f if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if "vnni" in f or f.startswith(("amx", "avx512f", "avx512_bf16")))


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.lite_worker:
        return lite_worker(args.lite_worker)
    from ppdet_lite.core.errors import writable_dir

    out = writable_dir(os.path.abspath(args.out), "--out")
    import numpy as np
    import paddle

    load_before = os.getloadavg()
    paddle.set_device("cpu")
    tic = time.time()
    dirs, sizes, prune_report = build_models(args.size, out, args.calib)
    size = args.size
    inputs = {"image": np.random.RandomState(1).normal(0, 1, (1, 3, size, size)).astype(np.float32),
              "im_shape": np.array([[size, size]], np.float32), "scale_factor": np.ones((1, 2), np.float32)}
    print(f"PP-YOLO Tiny {size}x{size}, 80 classes, random BN-calibrated weights, export.nms=False; "
          f"pruned FLOPs -{prune_report['flops_cut']:.1%}; built in {time.time() - tic:.0f} s; "
          f"CPU flags {cpu_flags()}")
    report = {"size": size, "threads": args.threads, "runs": args.runs, "warmup": args.warmup,
              "gap_ms": args.gap_ms, "paddle": paddle.__version__, "model_stats": sizes,
              "prune": prune_report, "cpu_flags": cpu_flags(), "dirs": dirs,
              "program_work": {n: program_work(d) for n, d in dirs.items()}}
    pi = paddle_inference(dirs, inputs, args, out)
    print_table(f"Paddle Inference {paddle.__version__}, oneDNN, {args.threads} threads", pi["stats"], sizes)
    for k, v in pi["agreement"].items():
        print(f"  {k}: " + ", ".join(f"{a} {b:.3f}" for a, b in v.items()))
    print_profile(pi["profile_ms_per_run"])
    print_work(report["program_work"])
    report["paddle_inference"] = pi
    if not args.no_lite:
        lt = paddle_lite(dirs, inputs, args, out)
        print_table(f"Paddle Lite x86, OMP_NUM_THREADS={args.threads}", lt["stats"], sizes)
        for k, v in lt["agreement"].items():
            print(f"  {k}: " + ", ".join(f"{a} {b:.3f}" for a, b in v.items()))
        report["paddle_lite_x86"] = lt
    load_after = os.getloadavg()
    report["load_average"] = [load_before[0], load_after[0]]
    print(f"\n{args.runs} rounds, {args.warmup} warm-up calls, {args.gap_ms} ms gaps; load average "
          f"{load_before[0]:.2f} -> {load_after[0]:.2f} on {os.cpu_count()} CPUs")
    path = os.path.join(out, "slim_latency.json")
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    run(main)

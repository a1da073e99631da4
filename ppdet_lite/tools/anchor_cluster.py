"""Cluster YOLO anchors on the TrainDataset's boxes and write them where the config needs them.

    python tools/anchor_cluster.py -c configs/ppyolo_tiny.yml -n 9 -s 320 [-m v2|v5] [-i 1000]
        [--output anchors.yml]

Prints the anchors, their mean best IoU and best possible recall (BPR), and writes
``--output``: a config whose ``_BASE_`` is ``-c`` and which sets the anchors in both
``YOLOv3Head`` and the TrainReader's ``Gt2YoloTarget``. Train with ``-c anchors.yml``, or write
it with ``--no_base`` and list it last in your own config's ``_BASE_``.
"""
import os

import numpy as np

from ..core.config import load_config
from ..core.errors import ConfigError, writable_dir
from ..data import anchor_cluster as ac
from ..data.builder import build_dataset
from ..utils.cli import ArgsParser, run


def input_size(cfg, text):
    """(W, H) from ``-s 320`` / ``-s 416,320`` (w,h), else TrainReader.inputs_def.image_shape."""
    if text:
        try:
            sizes = [int(v) for v in str(text).split(",")]
        except ValueError:
            raise ConfigError(f"-s {text!r}: give one size (320) or w,h (416,320)") from None
        if len(sizes) not in (1, 2) or min(sizes) < 1:
            raise ConfigError(f"-s {text!r}: give one size (320) or w,h (416,320)")
        return (sizes[0], sizes[-1])
    shape = ((cfg.get("TrainReader") or {}).get("inputs_def") or {}).get("image_shape")
    if not shape:
        raise ConfigError(f"{cfg['_path']}: no TrainReader.inputs_def.image_shape; pass the network "
                          "input size with -s, e.g. -s 320")
    return (int(shape[-1]), int(shape[-2]))


def main(argv=None):
    parser = ArgsParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--n", type=int, default=9, help="number of anchors")
    parser.add_argument("-s", "--size", default=None, help="network input size: 320 or w,h")
    parser.add_argument("-m", "--method", default="v2", choices=["v2", "v5"],
                        help="v2: IoU k-means; v5: IoU k-means + genetic refinement")
    parser.add_argument("-i", "--iters", type=int, default=1000, help="k-means iterations")
    parser.add_argument("-gi", "--gen_iters", type=int, default=1000, help="genetic iterations (v5)")
    parser.add_argument("-t", "--thresh", type=float, default=0.25,
                        help="anchor/box side ratio counted as a fit (BPR, v5 fitness)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="anchors.yml", help="config override file to write")
    parser.add_argument("--no_base", action="store_true", help="write only the overrides, no _BASE_")
    args = parser.parse_args(argv)

    for flag, value, low in (("-n", args.n, 1), ("-i", args.iters, 1), ("-gi", args.gen_iters, 0)):
        if value < low:
            raise ConfigError(f"{flag} {value}: must be >= {low}")
    if not 0 < args.thresh <= 1:
        raise ConfigError(f"-t {args.thresh}: give an anchor/box side ratio threshold in (0, 1], e.g. -t 0.25")
    cfg = load_config(args.config, args.opt)
    writable_dir(os.path.dirname(os.path.abspath(args.output)), "--output")
    old_masks = (cfg.get("YOLOv3Head") or {}).get("anchor_masks") or [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    if sum(len(m) for m in old_masks) != args.n and args.n % len(old_masks):
        raise ConfigError(f"-n {args.n}: {args.n} anchors do not split evenly over the {len(old_masks)} output "
                          f"levels of YOLOv3Head.anchor_masks; give a multiple of {len(old_masks)}, e.g. -n 9")
    dataset = build_dataset(cfg, "TrainDataset")
    dataset.check_or_download_dataset()
    dataset.parse_dataset()
    size = input_size(cfg, args.size)
    keep_ratio = ac.resize_mode(cfg.get("TrainReader"))
    wh = ac.box_shapes(dataset.roidbs, size, keep_ratio)
    print(f"{len(wh)} boxes from {len(dataset.roidbs)} images, resized to {size[0]}x{size[1]} "
          f"({'keep ratio' if keep_ratio else 'stretched'}); clustering {args.n} anchors ({args.method})")

    anchors = ac.cluster_anchors(wh, args.n, args.method, args.iters, args.gen_iters, args.thresh, args.seed)
    anchors = ac.round_anchors(anchors)
    stats = ac.anchor_stats(wh, np.asarray(anchors, float), args.thresh)
    masks = None if sum(len(m) for m in old_masks) == args.n else ac.split_masks(args.n, len(old_masks))
    old = (cfg.get("YOLOv3Head") or {}).get("anchors")
    if old is not None and len(old) == args.n:
        before = ac.anchor_stats(wh, np.asarray(old, float), args.thresh)
        print(f"config anchors:    mean best IoU {before['mean_iou']:.4f}  BPR {before['bpr']:.4f}")
    print(f"clustered anchors: mean best IoU {stats['mean_iou']:.4f}  BPR {stats['bpr']:.4f}  "
          f"(anchors past thresh {stats['anchors_past_thresh']:.2f}, fitness {stats['fitness']:.4f})")
    print(f"anchors: {anchors}" + (f"\nanchor_masks: {masks}" if masks else ""))

    out_dir = os.path.dirname(os.path.abspath(args.output))
    base = None
    if not args.no_base:  # relative when both files live under one project folder
        shared = os.path.commonpath([out_dir, os.path.dirname(cfg["_path"])])
        base = cfg["_path"] if shared == os.sep else os.path.relpath(cfg["_path"], out_dir)
    command = f"tools/anchor_cluster.py -c {args.config} -n {args.n} -s {size[0]},{size[1]} -m {args.method}"
    if args.opt:
        command += " -o " + " ".join(args.opt)
    usage = ("Train with -c this file, or list it last in another config's _BASE_." if base else
             "List this file last in a config's _BASE_ (after the model config).")
    header = (f"Anchors from {command}\n{len(wh)} boxes: mean best IoU {stats['mean_iou']:.4f}, "
              f"BPR {stats['bpr']:.4f}.\n{usage}")
    text = ac.anchor_override_yaml(cfg, anchors, masks, base, header)
    os.makedirs(out_dir, exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)
    print(f"wrote {args.output}: YOLOv3Head.anchors and TrainReader Gt2YoloTarget.anchors"
          + (f"; train with -c {args.output}" if base else ""))
    return anchors


def cli() -> None:
    run(main)

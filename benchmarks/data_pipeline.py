"""Images/s of PP-YOLO Tiny's training reader: ppdet_lite's transforms vs PaddleDetection 2.6's.

Same 200 generated shapes images, one process, no Mixup (as the measured op list). Both pipelines
get the same per-batch output size and interpolation (cycled through 192..512), so the random
batch-size draw does not decide the ratio; everything else keeps its own randomness.

    python benchmarks/data_pipeline.py [--images 200] [--batch-size 20] [--num-classes 80]
"""
import argparse
import copy
import os
import tempfile
import time

import ppdet_lite  # noqa: F401  (first: it loads zlib before paddle)
import numpy as np

SIZES = [192, 224, 256, 288, 320, 352, 384, 416, 448, 480, 512]
ANCHORS = [[10, 15], [24, 36], [72, 42], [35, 87], [102, 96], [60, 170], [220, 125], [128, 222],
           [264, 266]]
SAMPLE = [{"Decode": {}}, {"RandomDistort": {}},
          {"RandomExpand": {"fill_value": [123.675, 116.28, 103.53]}}, {"RandomCrop": {}},
          {"RandomFlip": {}}]
BATCH = [{"BatchRandomResize": {"target_size": SIZES, "random_size": True, "random_interp": False,
                                "keep_ratio": False}},
         {"NormalizeBox": {}}, {"PadBox": {"num_max_boxes": 100}}, {"BboxXYXY2XYWH": {}},
         {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                             "is_scale": True}},
         {"Permute": {}},
         {"Gt2YoloTarget": {"anchor_masks": [[6, 7, 8], [3, 4, 5], [0, 1, 2]], "anchors": ANCHORS,
                            "downsample_ratios": [32, 16, 8]}}]
INTERPS = [0, 1, 2, 3]  # nearest, linear, area, cubic (lanczos left out: it dominates when drawn)


def run(records, sample_fn, batch_fn, resize_op, batch_size, rounds, seed=0):
    """Images/s over ``rounds`` passes; batch k uses SIZES[k % 11] and INTERPS[k % 4]."""
    np.random.seed(seed)
    n, k, t0 = 0, 0, time.perf_counter()
    for _ in range(rounds):
        for start in range(0, len(records), batch_size):
            resize_op.target_size = [SIZES[k % len(SIZES)]]
            resize_op.interp = INTERPS[k % len(INTERPS)]
            samples = [sample_fn(copy.deepcopy(r)) for r in records[start:start + batch_size]]
            batch = batch_fn(samples)
            assert batch["image"].shape[0] == len(samples)
            n += len(samples)
            k += 1
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--num-classes", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "ppdet_lite_bench_shapes"))
    args = ap.parse_args()

    import paddle
    paddle.set_device("cpu")
    from ppdet_lite.data import ShapesDataSet
    from ppdet_lite.data.loader import BatchCompose, Compose, build_ops

    ds = ShapesDataSet(dataset_dir=args.data, image_dir="train",
                       anno_path="annotations/instances_train.json", num_images=args.images,
                       data_fields=["image", "gt_bbox", "gt_class", "is_crowd"], image_size=256)
    ds.parse_dataset()
    records = ds.roidbs[:args.images]

    ours_s = Compose(build_ops(SAMPLE, args.num_classes, "sample"), "sample")
    ours_b = BatchCompose(build_ops(BATCH, args.num_classes, "batch"), "batch")
    try:
        from ppdet.data.reader import BatchCompose as RefBatch, Compose as RefCompose
    except ImportError:
        print("PaddleDetection (ppdet) is not installed: ppdet_lite only")
        print(f"ppdet_lite: {run(records, ours_s, ours_b, ours_b.ops[0], args.batch_size, args.rounds):.1f} images/s")
        return
    import logging
    logging.getLogger("ppdet").setLevel(logging.ERROR)
    ref_s = RefCompose(SAMPLE, num_classes=args.num_classes)
    ref_b = RefBatch(BATCH, num_classes=args.num_classes)

    ref_rate, our_rate = [], []
    for rep in range(2):  # interleaved, so a load change on the machine hits both
        ref_rate.append(run(records, ref_s, ref_b, ref_b.transforms_cls[0], args.batch_size, args.rounds, rep))
        our_rate.append(run(records, ours_s, ours_b, ours_b.ops[0], args.batch_size, args.rounds, rep))
    ref, ours = max(ref_rate), max(our_rate)
    print(f"{len(records)} images x {args.rounds * 2} passes, batch {args.batch_size}, "
          f"{args.num_classes} classes, one process")
    print(f"PaddleDetection 2.6 transforms: {ref:7.1f} images/s")
    print(f"ppdet_lite transforms:          {ours:7.1f} images/s")
    print(f"ratio ppdet_lite / PaddleDetection: {ours / ref:.2f}x")


if __name__ == "__main__":
    main()

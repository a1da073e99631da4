"""Training speed of PP-YOLO Tiny: ppdet_lite against PaddleDetection 2.6.0, measured in one run.

    python benchmarks/train_speed.py            # ~1-2 minutes on 2 CPU cores
    python benchmarks/train_speed.py --images 256 --data_batches 24 --steps 20 --train_size 320

Two numbers, each for both libraries on the same config (``configs/ppyolo_tiny.yml``: its
TrainReader with Mixup / RandomDistort / RandomExpand / RandomCrop / RandomFlip, BatchRandomResize,
Gt2YoloTarget; its model, optimizer and EMA), batch and data (a synthetic shapes set written to a
temp dir):

- data loader images/s: batches drawn from each library's TrainReader (``--workers`` processes),
  best of ``--rounds`` alternating rounds;
- train step images/s: forward + backward + optimizer step + lr step + EMA update on the same
  real batches (one fixed input size) and the same initial weights, from the median step; the
  two models' steps alternate so that background load hits both alike.

Each is given in wall time and in this process's CPU time (the steadier comparison on a shared,
busy machine; the data loader's only with ``--workers 0``). Targets: data loader >= 2x
PaddleDetection, train step >= 1.0x. Prints the ratios; never fails on them.
"""
import argparse
import copy
import gc
import os
import tempfile
import time

os.environ.setdefault("FLAGS_paddle_num_threads", "2")  # CPU maths on both cores, for both libraries
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import ppdet_lite  # noqa: E402  (first: it loads zlib before paddle)
import numpy as np  # noqa: E402
import paddle  # noqa: E402
from ppdet_lite.data import COCODataSet, build_dataloader, make_shapes_dataset  # noqa: E402
from ppdet_lite.engine.optimizer import ModelEMA, build_lr, build_optimizer  # noqa: E402

DATA_FIELDS = ["image", "gt_bbox", "gt_class", "is_crowd"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "ppyolo_tiny.yml"))
    p.add_argument("--images", type=int, default=48, help="shapes images to generate")
    p.add_argument("--image_size", type=int, default=320, help="side of the generated images")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="loader worker processes (both libraries)")
    p.add_argument("--data_batches", type=int, default=12, help="timed loader batches per library")
    p.add_argument("--rounds", type=int, default=2, help="alternating loader rounds; best one counts")
    p.add_argument("--train_size", type=int, default=256, help="input side for the train-step part")
    p.add_argument("--steps", type=int, default=6, help="timed train steps per library")
    p.add_argument("--warmup", type=int, default=1, help="untimed train steps per library first")
    p.add_argument("--data_dir", default=None, help="where to write the shapes set (default: a temp dir)")
    p.add_argument("--depthwise_matmul_max_pixels", type=int, default=0,
                   help="ours: depthwise convs on maps of at most this many pixels as unfold + matmul "
                        "(modeling/depthwise.py; 0: Paddle's kernel, as PaddleDetection)")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- data loaders
def reader_cfg(cfg, batch_size, size=None):
    reader = copy.deepcopy(cfg["TrainReader"])
    reader.update(batch_size=batch_size, use_shared_memory=False, shuffle=True, drop_last=True)
    reader.pop("inputs_def", None)
    if size:  # one input size, so that train steps of both models see identical shapes
        for op in reader["batch_transforms"]:
            if "BatchRandomResize" in op:
                op["BatchRandomResize"]["target_size"] = [size]
    return reader


def our_loader(cfg, data_dir, batch_size, workers, size=None):
    ds = COCODataSet(data_dir, "train", "annotations/instances_train.json", DATA_FIELDS)
    return build_dataloader(reader_cfg(cfg, batch_size, size), ds, cfg["num_classes"], "train",
                            worker_num=workers, seed=0)


def ref_loader(cfg, data_dir, batch_size, workers):
    from ppdet.data.reader import TrainReader
    from ppdet.data.source.coco import COCODataSet as RefCOCO

    r = reader_cfg(cfg, batch_size)
    keys = ("sample_transforms", "batch_transforms", "batch_size", "shuffle", "drop_last",
            "mixup_epoch", "use_shared_memory")
    reader = TrainReader(num_classes=cfg["num_classes"], **{k: r[k] for k in keys if k in r})
    ds = RefCOCO(data_dir, "train", "annotations/instances_train.json", DATA_FIELDS)
    return reader(ds, workers)


def batches(loader, n):
    """``n`` batches, re-iterating the loader across epochs."""
    out = 0
    while out < n:
        for batch in loader:
            yield batch
            out += 1
            if out == n:
                return


def loader_speed(make, n, batch_size):
    """(wall, CPU) images/s over ``n`` batches after one warm-up batch (worker start-up excluded);
    CPU time counts this process only, so it is meaningful with ``--workers 0``."""
    it = batches(make(), n + 1)
    next(it)
    tic, cpu = time.perf_counter(), time.process_time()
    for _ in it:
        pass
    wall, cpu = time.perf_counter() - tic, time.process_time() - cpu
    del it
    gc.collect()  # stop this loader's prefetch thread before the other library runs
    return n * batch_size / wall, n * batch_size / max(cpu, 1e-9)


# ---------------------------------------------------------------------------- models
def ref_tiny(cfg):
    """PaddleDetection's PP-YOLO Tiny from its classes, with the config's values."""
    from ppdet.modeling.architectures.yolo import YOLOv3
    from ppdet.modeling.backbones.mobilenet_v3 import MobileNetV3
    from ppdet.modeling.heads.yolo_head import YOLOv3Head
    from ppdet.modeling.layers import MultiClassNMS, YOLOBox
    from ppdet.modeling.losses import IouLoss
    from ppdet.modeling.losses.yolo_loss import YOLOv3Loss
    from ppdet.modeling.necks.yolo_fpn import PPYOLOTinyFPN
    from ppdet.modeling.post_process import BBoxPostProcess

    nc, norm = cfg["num_classes"], "bn"
    backbone = MobileNetV3(norm_type=norm, **cfg["MobileNetV3"])
    neck = PPYOLOTinyFPN(in_channels=[s.channels for s in backbone.out_shape], norm_type=norm,
                         **cfg["PPYOLOTinyFPN"])
    loss_cfg = {k: v for k, v in cfg["YOLOv3Loss"].items() if k != "iou_loss"}
    loss = YOLOv3Loss(num_classes=nc, iou_loss=IouLoss(**cfg["IouLoss"]), **loss_cfg)
    head_cfg = {k: v for k, v in cfg["YOLOv3Head"].items() if k in ("anchors", "anchor_masks")}
    head = YOLOv3Head(in_channels=[c.channels for c in neck.out_shape], num_classes=nc, loss=loss,
                      **head_cfg)
    post_cfg = cfg["BBoxPostProcess"]
    decode = {k: v for k, v in post_cfg["decode"].items() if k != "name"}
    nms = {k: v for k, v in post_cfg["nms"].items() if k != "name"}
    post = BBoxPostProcess(num_classes=nc, decode=YOLOBox(num_classes=nc, **decode),
                           nms=MultiClassNMS(**nms))
    return YOLOv3(backbone, neck, head, post)


class Step:
    """One library's training step: forward, backward, optimizer, lr and EMA, as its trainer does.
    Records wall and process-CPU seconds of each timed step."""

    def __init__(self, model, optimizer, lr, ema):
        self.model, self.optimizer, self.lr, self.ema = model, optimizer, lr, ema
        self.wall, self.cpu, self.batch, self.first_loss = [], [], 0, None

    def __call__(self, batch, timed):
        tic, cpu = time.perf_counter(), time.process_time()
        loss = self.model(batch)["loss"]
        loss.backward()
        self.optimizer.step()
        self.optimizer.clear_grad()
        self.lr.step()
        self.ema.update()
        value = float(loss)  # syncs, as the trainers' logging does
        if timed:
            self.wall.append(time.perf_counter() - tic)
            self.cpu.append(time.process_time() - cpu)
            self.batch = batch["image"].shape[0]
        if self.first_loss is None:
            self.first_loss = value

    def speed(self):
        """(wall, CPU) images/s from the median step: robust to load spikes on a shared machine."""
        return self.batch / float(np.median(self.wall)), self.batch / float(np.median(self.cpu))


def build_steps(cfg, steps_per_epoch):
    from ppdet.optimizer import LearningRate, ModelEMA as RefEMA, OptimizerBuilder

    ours = ppdet_lite.build_model(cfg)
    ref = ref_tiny(cfg)
    assert list(ours.state_dict()) == list(ref.state_dict()), "state_dict keys differ"
    ref.set_state_dict(ours.state_dict())  # the same initial weights
    epochs = int(cfg.get("epoch", 1))
    lr = build_lr(cfg["LearningRate"], steps_per_epoch, epochs)
    our_step = Step(ours, build_optimizer(cfg.get("OptimizerBuilder"), lr, ours), lr,
                    ModelEMA(ours, float(cfg.get("ema_decay", 0.9998))))
    lr_cfg = cfg["LearningRate"]
    ref_lr = LearningRate(lr_cfg["base_lr"], copy.deepcopy(lr_cfg["schedulers"]))(steps_per_epoch)
    ref_opt = OptimizerBuilder(**copy.deepcopy(cfg.get("OptimizerBuilder") or {}))(ref_lr, ref)
    ref_step = Step(ref, ref_opt, ref_lr, RefEMA(ref, float(cfg.get("ema_decay", 0.9998))))
    ours.train()
    ref.train()
    return our_step, ref_step


# ---------------------------------------------------------------------------- main
def main(argv=None):
    args = parse_args(argv)
    paddle.set_device("cpu")
    try:
        import ppdet  # noqa: F401
    except ImportError:
        raise SystemExit("PaddleDetection 2.6.0 is the baseline: pip install --no-deps paddledet==2.6.0")
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="train_speed_")
        args.data_dir = tmp.name
    tic = time.perf_counter()
    make_shapes_dataset(args.data_dir, num_train=args.images, num_val=0, image_size=args.image_size)
    print(f"shapes set: {args.images} images of {args.image_size} px in {time.perf_counter() - tic:.1f} s")
    cfg = ppdet_lite.load_config(args.config, {"num_classes": 4, "norm_type": "bn", "pretrain_weights": "",
                                               "depthwise_matmul_max_pixels": args.depthwise_matmul_max_pixels})
    bs = args.batch_size

    # data loaders, alternating rounds, best of each
    speeds = {"ours": [], "ref": []}
    for _ in range(args.rounds):
        speeds["ours"].append(loader_speed(lambda: our_loader(cfg, args.data_dir, bs, args.workers),
                                           args.data_batches, bs))
        speeds["ref"].append(loader_speed(lambda: ref_loader(cfg, args.data_dir, bs, args.workers),
                                          args.data_batches, bs))
    data = {k: tuple(np.max(v, axis=0)) for k, v in speeds.items()}  # best round, wall and CPU

    # train steps on the same real batches
    n = args.warmup + args.steps
    loader = our_loader(cfg, args.data_dir, bs, 0, size=args.train_size)
    fixed = [{k: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v for k, v in b.items()}
             for b in batches(loader, n)]
    our_step, ref_step = build_steps(cfg, len(loader))
    for i, batch in enumerate(fixed):
        timed = i >= args.warmup
        first, second = (our_step, ref_step) if i % 2 == 0 else (ref_step, our_step)
        first(dict(batch), timed)
        second(dict(batch), timed)

    print(f"\nPP-YOLO Tiny ({os.path.relpath(args.config, ROOT)}, 4 classes), batch {bs}, CPU, "
          f"FLAGS_paddle_num_threads={os.environ['FLAGS_paddle_num_threads']}, loader workers "
          f"{args.workers}, paddle {paddle.__version__}, ours: depthwise_matmul_max_pixels "
          f"{args.depthwise_matmul_max_pixels}")
    print(f"data: {args.data_batches} batches x {args.rounds} rounds (best round); train: {args.steps} "
          f"steps at {args.train_size} px after {args.warmup} warm-up, first-step loss "
          f"ours {our_step.first_loss:.2f} / PaddleDetection {ref_step.first_loss:.2f}")
    train = {"ours": our_step.speed(), "ref": ref_step.speed()}
    print(f"{'images/s':28s}{'ppdet_lite':>12s}{'PaddleDet':>12s}{'ratio':>8s}   target")
    for name, res, target in (("data loader", data, 2.0), ("train step", train, 1.0)):
        clocks = ("wall", "CPU") if name == "train step" or args.workers == 0 else ("wall",)
        for k, clock in enumerate(clocks):
            ours, ref = res["ours"][k], res["ref"][k]
            print(f"{name + ' (' + clock + ' time)':28s}{ours:12.2f}{ref:12.2f}{ours / ref:7.2f}x   "
                  f">= {target:.1f}x {'ok' if ours / ref >= target else 'MISSED'}")
    print("CPU-time rates count this process's CPU seconds: on a busy shared machine they compare the "
          "work done more steadily than wall time.")
    if tmp is not None:
        tmp.cleanup()
    return {"data": data, "train": train}


if __name__ == "__main__":
    main()

"""Run effdet 0.4.1 (PyTorch) as the parity oracle; executed by the side venv's Python, never
imported by our tests (no paddle here).

    effdet_oracle.py --model tf_efficientdet_d0 --size 256 --batch 2 --seed 0 --out DIR

Writes DIR/weights.npz (the effdet state_dict after random, BN-calibrated initialisation) and
DIR/outputs.npz: ``image`` [B,3,S,S], ``backbone_{i}``, ``fpn_{i}``, ``cls_{i}``, ``box_{i}``
(per level, NCHW), ``anchors`` (yxyx), the random targets ``gt_bbox`` (yxyx) / ``gt_cls``
(1-based, -1 padding), DetBenchTrain's ``loss``, ``class_loss``, ``box_loss`` (eval mode: no
drop-path, running BN statistics), with --float64 the float64 maps ``f64_*``, and DetBenchPredict's ``detections`` [B,100,6] (x1,y1,x2,y2,
score, class) with ``img_scale`` / ``img_size``.
"""
import argparse
import copy
import os
import time
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")


def randomize(model, rng: np.random.RandomState, x: torch.Tensor):
    """Random BN affine and fusion weights, then BN running statistics set to the batch
    statistics of ``x`` (one train-mode pass, drop-path off), so every layer stays O(1)."""
    from timm.layers import DropPath

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("edge_weights"):
                p.copy_(torch.from_numpy(rng.uniform(0.2, 1.5, p.shape).astype("float32")))
            elif p.ndim == 1 and ("bn" in name.split(".")[-2] or name.split(".")[-2] == "bn"):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(torch.from_numpy((base + rng.randn(*p.shape) * 0.1).astype("float32")))
            elif p.ndim == 1:  # conv biases
                p.add_(torch.from_numpy((rng.randn(*p.shape) * 0.05).astype("float32")))
            elif ".predict.conv_pw." in name:  # logits / box codes of a few units, not tens
                p.mul_(0.05)
    for m in model.modules():
        if isinstance(m, DropPath):
            m.drop_prob = 0.
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def random_targets(rng: np.random.RandomState, batch: int, size: int, num_classes: int, k: int = 6):
    """yxyx boxes in input pixels, 1-based classes, the last rows of image 1.. padded with -1."""
    boxes = np.zeros([batch, k, 4], "float32")
    cls = np.full([batch, k], -1, "float32")
    for b in range(batch):
        n = k - b  # a different count per image
        for i in range(n):
            h, w = rng.uniform(0.05, 0.6, 2) * size
            y0, x0 = rng.uniform(0, size - h), rng.uniform(0, size - w)
            boxes[b, i] = [y0, x0, y0 + h, x0 + w]
            cls[b, i] = rng.randint(1, num_classes + 1)
    return boxes, cls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tf_efficientdet_d0")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--float64", action="store_true", help="also store float64 outputs (f64_*)")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(args.seed)
    rng = np.random.RandomState(args.seed)
    from effdet import DetBenchPredict, DetBenchTrain, create_model

    t0 = time.time()
    model = create_model(args.model, pretrained=False, pretrained_backbone=False,
                         image_size=(args.size, args.size))
    x = torch.from_numpy(rng.randn(args.batch, 3, args.size, args.size).astype("float32"))
    randomize(model, rng, x)
    out = {"image": x.numpy()}
    with torch.no_grad():
        feats = model.backbone(x)
        fpn = model.fpn(list(feats))
        cls, box = model.class_net(fpn), model.box_net(fpn)
    for name, maps in (("backbone", feats), ("fpn", fpn), ("cls", cls), ("box", box)):
        for i, t in enumerate(maps):
            out[f"{name}_{i}"] = t.numpy()
    if args.float64:  # the same weights and input in float64: how far float32 itself is
        m64 = copy.deepcopy(model).double()
        for m in m64.modules():  # Paddle keeps BN epsilon as a float32 attribute: use that value
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = float(np.float32(m.eps))
        with torch.no_grad():
            f64 = m64.backbone(x.double())
            p64 = m64.fpn(list(f64))
            maps64 = (("backbone", f64), ("fpn", p64), ("cls", m64.class_net(p64)),
                      ("box", m64.box_net(p64)))
        for name, maps in maps64:
            for i, t in enumerate(maps):
                out[f"f64_{name}_{i}"] = t.numpy()
        del m64

    nc = model.config.num_classes
    gt_bbox, gt_cls = random_targets(rng, args.batch, args.size, nc)
    img_scale = np.full([args.batch], 1.25, "float32")  # original = input * 1.25
    img_size = np.full([args.batch, 2], args.size * 1.25, "float32")
    train = DetBenchTrain(model).eval()
    with torch.no_grad():
        losses = train(x, {"bbox": torch.from_numpy(gt_bbox), "cls": torch.from_numpy(gt_cls),
                           "img_scale": torch.from_numpy(img_scale),
                           "img_size": torch.from_numpy(img_size)})
        predict = DetBenchPredict(model).eval()
        dets = predict(x, {"img_scale": torch.from_numpy(img_scale),
                           "img_size": torch.from_numpy(img_size)})
    out.update(loss=losses["loss"].numpy(), class_loss=losses["class_loss"].numpy(),
               box_loss=losses["box_loss"].numpy(), detections=dets.numpy(),
               anchors=predict.anchors.boxes.numpy(), gt_bbox=gt_bbox, gt_cls=gt_cls,
               img_scale=img_scale, img_size=img_size,
               seconds=np.float32(time.time() - t0))
    os.makedirs(args.out, exist_ok=True)
    np.savez(os.path.join(args.out, "weights.npz"),
             **{k: v.numpy() for k, v in model.state_dict().items()})
    np.savez(os.path.join(args.out, "outputs.npz"), **out)
    print(f"effdet oracle {args.model} {args.size}: {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()

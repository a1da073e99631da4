"""Export PaddleDetection 2.6.0's own PP-YOLO Tiny (random weights) as a deploy model dir.

Run in its own process from the repo root (ppdet keeps global state):
    python -m tests.deploy.ppdet_tiny_export OUT_DIR [--size 320] [--num_classes 80] [--seed 0]
Writes OUT_DIR/model.pdmodel, model.pdiparams and infer_cfg.yml in PaddleDetection's deploy format.
"""
import ppdet_lite  # noqa: F401  (first: it loads zlib before paddle)
import argparse
import os

import paddle
import yaml

from .helpers import IMAGENET_MEAN, IMAGENET_STD, spread_scores

TINY_ANCHORS = [[10, 15], [24, 36], [72, 42], [35, 87], [102, 96], [60, 170], [220, 125],
                [128, 222], [264, 266]]


def build_ppdet_tiny(num_classes: int):
    from ppdet.modeling.architectures import YOLOv3
    from ppdet.modeling.backbones import MobileNetV3
    from ppdet.modeling.heads import YOLOv3Head
    from ppdet.modeling.layers import MultiClassNMS, YOLOBox
    from ppdet.modeling.necks import PPYOLOTinyFPN
    from ppdet.modeling.post_process import BBoxPostProcess

    backbone = MobileNetV3(model_name="large", scale=0.5, feature_maps=[7, 13, 16],
                           with_extra_blocks=False)
    neck = PPYOLOTinyFPN(in_channels=[s.channels for s in backbone.out_shape],
                         detection_block_channels=[160, 128, 96], spp=True, drop_block=True)
    head = YOLOv3Head(in_channels=[s.channels for s in neck.out_shape], anchors=TINY_ANCHORS,
                      anchor_masks=[[6, 7, 8], [3, 4, 5], [0, 1, 2]], num_classes=num_classes,
                      loss=None)
    post = BBoxPostProcess(num_classes=num_classes,
                           decode=YOLOBox(num_classes=num_classes, conf_thresh=0.005,
                                          downsample_ratio=32, clip_bbox=True, scale_x_y=1.05),
                           nms=MultiClassNMS(keep_top_k=100, nms_threshold=0.45, nms_top_k=1000,
                                             score_threshold=0.005))
    return YOLOv3(backbone=backbone, neck=neck, yolo_head=head, post_process=post)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--num_classes", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    paddle.set_device("cpu")
    paddle.seed(args.seed)
    model = build_ppdet_tiny(args.num_classes)
    spread_scores(model, args.size, args.seed)
    model.eval()
    spec = [{"image": paddle.static.InputSpec([None, 3, args.size, args.size], "float32", "image"),
             "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
             "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor")}]
    os.makedirs(args.out_dir, exist_ok=True)
    static = paddle.jit.to_static(model, input_spec=spec)
    paddle.jit.save(static, os.path.join(args.out_dir, "model"), input_spec=spec)
    infer_cfg = {
        "mode": "paddle", "draw_threshold": 0.5, "metric": "COCO", "use_dynamic_shape": False,
        "arch": "YOLO", "min_subgraph_size": 3,
        "Preprocess": [
            {"type": "Resize", "interp": 2, "keep_ratio": False,
             "target_size": [args.size, args.size]},
            {"type": "NormalizeImage", "is_scale": True, "mean": IMAGENET_MEAN,
             "std": IMAGENET_STD},
            {"type": "Permute"}],
        "label_list": [f"class{i}" for i in range(args.num_classes)],
    }
    with open(os.path.join(args.out_dir, "infer_cfg.yml"), "w") as f:
        yaml.safe_dump(infer_cfg, f, sort_keys=False)


if __name__ == "__main__":
    main()

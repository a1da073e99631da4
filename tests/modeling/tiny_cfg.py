"""The PP-YOLO Tiny config (PaddleDetection's ppyolo_tiny.yml) as a dict, for the modeling tests."""
import copy

TINY_ANCHORS = [[10, 15], [24, 36], [72, 42], [35, 87], [102, 96], [60, 170], [220, 125],
                [128, 222], [264, 266]]
TINY = {
    "architecture": "YOLOv3",
    "norm_type": "sync_bn",
    "num_classes": 80,
    "YOLOv3": {"backbone": "MobileNetV3", "neck": "PPYOLOTinyFPN", "yolo_head": "YOLOv3Head",
               "post_process": "BBoxPostProcess"},
    "MobileNetV3": {"model_name": "large", "scale": 0.5, "with_extra_blocks": False,
                    "extra_block_filters": [], "feature_maps": [7, 13, 16]},
    "PPYOLOTinyFPN": {"detection_block_channels": [160, 128, 96], "spp": True, "drop_block": True},
    "YOLOv3Head": {"anchors": TINY_ANCHORS, "anchor_masks": [[6, 7, 8], [3, 4, 5], [0, 1, 2]],
                   "loss": "YOLOv3Loss"},
    "YOLOv3Loss": {"ignore_thresh": 0.5, "downsample": [32, 16, 8], "label_smooth": False,
                   "scale_x_y": 1.05, "iou_loss": "IouLoss"},
    "IouLoss": {"loss_weight": 2.5, "loss_square": True},
    "BBoxPostProcess": {
        "decode": {"name": "YOLOBox", "conf_thresh": 0.005, "downsample_ratio": 32,
                   "clip_bbox": True, "scale_x_y": 1.05},
        "nms": {"name": "MultiClassNMS", "keep_top_k": 100, "nms_threshold": 0.45,
                "nms_top_k": 1000, "score_threshold": 0.005},
    },
}


def tiny_cfg(**overrides):
    cfg = copy.deepcopy(TINY)
    cfg.update(overrides)
    return cfg

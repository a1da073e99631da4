"""Losses; importing this package registers them."""
from .iou_loss import IouAwareLoss, IouLoss  # noqa: F401
from .yolo_loss import YOLOv3Loss  # noqa: F401
from .yolov4_loss import YOLOv4Loss  # noqa: F401
from .efficientdet_loss import EfficientDetLoss  # noqa: F401

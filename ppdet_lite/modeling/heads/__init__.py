"""Heads; importing this package registers them."""
from .yolo_head import YOLOv3Head  # noqa: F401
from .yolov4_head import YOLOv4Head  # noqa: F401
from .efficientdet_head import EfficientDetHead  # noqa: F401

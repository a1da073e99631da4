"""Heads; importing this package registers them."""
from .yolo_head import YOLOv3Head  # noqa: F401

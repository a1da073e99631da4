"""Necks; importing this package registers them."""
from .tiny_fpn import PPYOLOTinyFPN  # noqa: F401
from .ppyolo_fpn import PPYOLOFPN  # noqa: F401
from .ppyolo_pan import PPYOLOPAN  # noqa: F401
from .yolov4_pan import YOLOv4PAN  # noqa: F401
from .yolov4_tiny_fpn import YOLOv4TinyFPN  # noqa: F401
from .bifpn import BiFPN  # noqa: F401

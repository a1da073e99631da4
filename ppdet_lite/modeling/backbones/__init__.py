"""Backbones; importing this package registers them."""
from .mobilenet_v3 import MobileNetV3  # noqa: F401
from .resnet import ResNet  # noqa: F401
from .cspdarknet import CSPDarkNet  # noqa: F401
from .yolov4_tiny import YOLOv4TinyBackbone  # noqa: F401
from .efficientnet import EfficientNet  # noqa: F401

"""Backbones; importing this package registers them."""
from .mobilenet_v3 import MobileNetV3  # noqa: F401
from .resnet import ResNet  # noqa: F401
from .efficientnet import EfficientNet  # noqa: F401

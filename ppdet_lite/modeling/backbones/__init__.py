"""Backbones; importing this package registers them."""
from . import mobilenet_v3  # noqa: F401
from .mobilenet_v3 import MobileNetV3  # noqa: F401
from .resnet import ResNet  # noqa: F401

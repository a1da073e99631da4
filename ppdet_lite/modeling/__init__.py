"""Detection models: backbones, necks, heads, losses, post-process and the YOLOv3 architecture."""
from . import layers  # noqa: F401

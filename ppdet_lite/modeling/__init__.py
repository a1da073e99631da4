"""Detection models: backbones, necks, heads, losses, post-process, the YOLOv3 and EfficientDet
architectures, and ``build_model(cfg)`` that wires them from a PaddleDetection-layout config dict."""
from . import backbones, heads, layers, losses, necks  # noqa: F401  (registers components)
from . import architecture, post_process  # noqa: F401
from . import efficientdet, efficientdet_post_process  # noqa: F401
from .builder import build_model  # noqa: F401

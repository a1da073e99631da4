"""Detection models: backbones, necks, heads, losses, post-process, the YOLOv3, YOLOv4 and EfficientDet
architectures, and ``build_model(cfg)`` that wires them from a PaddleDetection-layout config dict."""
from . import backbones, heads, layers, losses, necks  # noqa: F401  (registers components)
from . import architecture, diou_nms, post_process, yolov4, yolov4_box  # noqa: F401
from . import efficientdet, efficientdet_post_process  # noqa: F401
from .builder import build_model  # noqa: F401

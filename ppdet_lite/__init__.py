"""ppdet_lite: PaddleDetection's PP-YOLO family, YOLOv4 / Scaled-YOLOv4 (darknet weights in and
out), compact and weight-compatible.

Public API::

    cfg = ppdet_lite.load_config("configs/ppyolo_tiny.yml", overrides={"num_classes": 3})
    model = ppdet_lite.build_model(cfg)
    ppdet_lite.load_weights(model, "output/ppyolo_tiny/model_final.pdparams")
    detector = ppdet_lite.Detector(cfg, weights="output/ppyolo_tiny/model_final.pdparams")
    result = detector.predict("demo.jpg")  # boxes, class ids, class names, scores
"""
# zlib must be imported before paddle: importing paddle 2.6.2 first leaves zlib broken (segfaults
# in gzip/pycocotools, scipy import errors). Every entry point imports this package first.
import zlib  # noqa: F401

from .core import ConfigError, DatasetError, load_config

__version__ = "0.1.0"


def build_model(cfg):
    """The detector described by ``cfg`` (a dict from ``load_config``)."""
    from .modeling import build_model as _build

    return _build(cfg)


def load_weights(model, path_or_url: str, darknet_cfg: str = None, **kwargs):
    """Load a ``.pdparams`` file or URL into ``model`` (``engine.checkpoint.load_weights``), or,
    with ``darknet_cfg``, a darknet ``.weights`` file trained with that ``.cfg``
    (``darknet.load_weights``: layers mapped by structure)."""
    if darknet_cfg is not None:
        from .darknet import load_weights as _load_darknet

        return _load_darknet(model, path_or_url, darknet_cfg, **kwargs)
    from .engine.checkpoint import load_weights as _load

    return _load(model, path_or_url, **kwargs)


def __getattr__(name):
    if name == "Detector":
        from .engine.predictor import Detector

        return Detector
    raise AttributeError(name)

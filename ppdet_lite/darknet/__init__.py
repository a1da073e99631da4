"""Darknet interoperability: read ``.cfg`` + ``.weights`` into our YOLOv4 models, write them back.

    from ppdet_lite import darknet
    darknet.load_weights(model, "yolov4.weights", darknet_cfg="yolov4.cfg")  # -> report dict
    darknet.save_darknet(model, "out.cfg", "out.weights", width=608, height=608)
    model, config, report = darknet.convert("yolov4.cfg", "yolov4.weights")  # config found

``cfg`` parses and resolves cfg files; ``weights`` reads and writes the binary format; ``graph``
describes one of our models as darknet layers; ``mapping`` matches that description against a cfg
and moves the tensors both ways; ``convert`` finds the ppdet_lite config a cfg is.
"""
from .cfg import count_params, parse_cfg, parse_cfg_text, resolve  # noqa: F401
from .graph import describe  # noqa: F401
from .mapping import apply_darknet_cfg, compare, load_darknet_weights, save_darknet  # noqa: F401
from .weights import read_weights, write_weights  # noqa: F401


def load_weights(model, path: str, darknet_cfg: str, allow_class_mismatch: bool = True):
    """``load_darknet_weights`` under the facade's name: darknet ``path`` into ``model``."""
    return load_darknet_weights(model, path, darknet_cfg, allow_class_mismatch)


def convert(darknet_cfg: str, weights: str, config_path=None):
    """See ``darknet.convert.convert`` (imported lazily: it builds models)."""
    from .convert import convert as _convert

    return _convert(darknet_cfg, weights, config_path)

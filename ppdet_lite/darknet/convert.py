"""Darknet → ppdet_lite conversion: pick (or take) the ppdet_lite config that a darknet cfg is,
set its classes/anchors from the cfg, build the model and load the .weights.

    path = find_config("yolov4-custom.cfg", "configs")       # the configs/yolov4*.yml it matches
    model, config, report = convert("yolov4.cfg", "yolov4.weights")
    paddle.save(model.state_dict(), "yolov4.pdparams")

Candidates are compared lazily (``paddle.LazyGuard``: no parameter memory), so trying all seven
YOLOv4 configs takes a few seconds.
"""
import glob
import os
from typing import Any, Dict, List, Optional, Tuple

import paddle

from ..core.config import load_config
from ..core.errors import ConfigError
from ..modeling import build_model
from .cfg import parse_cfg, resolve
from .graph import describe
from .mapping import apply_darknet_cfg, compare, load_darknet_weights

__all__ = ["find_config", "convert", "DEFAULT_CONFIGS"]

DEFAULT_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs")


def find_config(darknet_cfg: str, configs_dir: str = DEFAULT_CONFIGS) -> str:
    """The ``yolov4*.yml`` under ``configs_dir`` whose model is the network of ``darknet_cfg``
    (classes and anchors taken from the cfg); ``ConfigError`` listing each mismatch otherwise."""
    theirs = resolve(parse_cfg(darknet_cfg), path=darknet_cfg)
    paths = sorted(glob.glob(os.path.join(configs_dir, "yolov4*.yml")))
    if not paths:
        raise ConfigError(f"no yolov4*.yml config under {configs_dir}; pass -c <config>")
    misses: List[str] = []
    for path in paths:
        try:
            config = apply_darknet_cfg(load_config(path), darknet_cfg)
            with paddle.LazyGuard():
                compare(describe(build_model(config)).layers, theirs, darknet_cfg)
            return path
        except (ConfigError, ValueError) as e:  # ValueError: a component refused the values
            misses.append(f"  {os.path.basename(path)}: {e}")
    raise ConfigError(f"{darknet_cfg} matches none of the YOLOv4 configs in {configs_dir}:\n"
                      + "\n".join(misses))


def convert(darknet_cfg: str, weights: str, config_path: Optional[str] = None
            ) -> Tuple[Any, Dict[str, Any], Dict[str, Any]]:
    """(model with the darknet weights, its config, load report). ``config_path`` defaults to
    ``find_config(darknet_cfg)``; the config's classes and anchors follow the cfg."""
    path = config_path or find_config(darknet_cfg)
    config = apply_darknet_cfg(load_config(path), darknet_cfg)
    model = build_model(config)
    report = load_darknet_weights(model, weights, darknet_cfg, allow_class_mismatch=False)
    report["config"] = path
    model.eval()
    return model, config, report

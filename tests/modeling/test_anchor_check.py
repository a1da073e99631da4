"""The head's anchors and the reader's Gt2YoloTarget anchors must agree (they live in two places)."""
import os

import pytest

import ppdet_lite
from ppdet_lite.core.errors import ConfigError

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                      "configs", "ppyolo_tiny_shapes.yml")


def test_mismatched_anchors_are_refused_at_build():
    cfg = ppdet_lite.load_config(CONFIG)
    ppdet_lite.build_model(cfg)  # the shipped config agrees with itself (one YAML anchor)
    cfg["YOLOv3Head"]["anchors"] = [[a + 1, b] for a, b in cfg["YOLOv3Head"]["anchors"]]
    with pytest.raises(ConfigError, match="YOLOv3Head.anchors and TrainReader Gt2YoloTarget.anchors differ"):
        ppdet_lite.build_model(cfg)

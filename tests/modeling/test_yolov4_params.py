"""Trainable parameter counts of the YOLOv4 family (80 classes) equal AlexeyAB's published cfgs,
to the parameter, and every model describes itself as exactly the cfg's layer list."""
import os

import paddle
import pytest

import ppdet_lite
from ppdet_lite.darknet.cfg import count_params, parse_cfg, resolve
from ppdet_lite.darknet.graph import describe
from ppdet_lite.darknet.mapping import compare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "darknet")

# config, published cfg, trainable params (conv weights + BN scale/shift or conv bias)
COUNTS = [
    ("yolov4_cspdarknet53", "yolov4", 64_363_101),      # issue: 64.36M
    ("yolov4_tiny", "yolov4-tiny", 6_056_606),          # 6.06M
    ("yolov4_csp", "yolov4-csp", 52_921_437),           # 52.92M
    ("yolov4x_mish", "yolov4x-mish", 99_751_053),       # 99.75M
    ("yolov4_p5", "yolov4-p5", 70_830_684),             # 70.83M
    ("yolov4_p6", "yolov4-p6", 127_585_200),            # 127.59M
    ("yolov4_p7", "cspx-p7-mish", 276_316_196),         # 276.3M
]
SLOW = {"yolov4x_mish", "yolov4_p6", "yolov4_p7"}  # 3-20 s to build on 2 cores


def _cases():
    return [pytest.param(*c, marks=pytest.mark.slow) if c[0] in SLOW else c for c in COUNTS]


@pytest.mark.parametrize("dk,expected", [(c[1], c[2]) for c in COUNTS])
def test_published_cfg_counts(dk, expected):
    layers = resolve(parse_cfg(os.path.join(FIXTURES, dk + ".cfg")))
    assert count_params(layers) == expected
    if dk == "yolov4":  # the .weights floats (with BN mean/var): the often quoted 64,429,405
        assert count_params(layers, trainable=False) == 64_429_405


@pytest.mark.parametrize("config,dk,expected", _cases())
def test_model_param_count_and_structure(config, dk, expected):
    model = ppdet_lite.build_model(ppdet_lite.load_config(os.path.join(ROOT, "configs",
                                                                       config + ".yml")))
    n = sum(int(p.numel()) for p in model.parameters() if not p.stop_gradient)
    assert n == expected
    path = os.path.join(FIXTURES, dk + ".cfg")
    assert compare(describe(model).layers, resolve(parse_cfg(path)), path) == []


def test_structure_of_every_model_without_allocating():
    """All seven, built lazily (no parameter memory): the layer lists equal the cfgs'."""
    for config, dk, _ in COUNTS:
        with paddle.LazyGuard():
            model = ppdet_lite.build_model(
                ppdet_lite.load_config(os.path.join(ROOT, "configs", config + ".yml")))
            path = os.path.join(FIXTURES, dk + ".cfg")
            assert compare(describe(model).layers, resolve(parse_cfg(path)), path) == []

"""EfficientDet D0-D7x built from configs/: trainable parameter counts equal effdet 0.4.1's
``tf_efficientdet_*`` (counted once in the side environment, tests/oracles/effdet_env.py:
sum(p.numel() for p in create_model(name, pretrained_backbone=False).parameters()))."""
import os

import numpy as np
import pytest

from ppdet_lite.core.config import load_config
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.modeling import build_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EFFDET_PARAMS = {
    "d0": 3880067, "d1": 6625898, "d2": 8097039, "d3": 12032296, "d4": 20723675,
    "d5": 33653315, "d6": 51871782, "d7": 51871782, "d7x": 77147166,
}
SLOW = {"d4", "d5", "d6", "d7", "d7x"}


def trainable(model) -> int:
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def build(name: str):
    return build_model(load_config(os.path.join(ROOT, "configs", f"efficientdet_{name}.yml")))


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in EFFDET_PARAMS])
def test_param_count_equals_effdet(name):
    assert trainable(build(name)) == EFFDET_PARAMS[name]


def test_d0_structure():
    model = build("d0")
    assert model.backbone.out_channels == [40, 112, 320]
    assert model.neck.out_channels == [64] * 5
    assert len(model.neck.cell) == 3 and len(model.head.class_net.conv_rep) == 3
    assert model.head.anchors.num_anchors == 9
    bias = model.head.class_net.predict.conv_pw.bias.numpy()
    np.testing.assert_allclose(bias, -np.log(99.), rtol=1e-6)
    assert model.neck.cell[0].fnode[0].combine.edge_weights is not None


def test_d7x_config_values():
    cfg = load_config(os.path.join(ROOT, "configs", "efficientdet_d7x.yml"))
    assert cfg["EfficientNet"]["scale"] == "b7"
    assert cfg["BiFPN"]["max_level"] == 8 and cfg["BiFPN"]["weight_method"] == "sum"
    assert load_config(os.path.join(ROOT, "configs", "efficientdet_d7.yml"))[
        "EfficientDetHead"]["anchor_scale"] == 5.0


def test_builder_names_missing_head():
    cfg = load_config(os.path.join(ROOT, "configs", "efficientdet_d0.yml"))
    del cfg["EfficientDet"]["head"]
    with pytest.raises(ConfigError, match="'yolo_head' \\(or 'head'\\)"):
        build_model(cfg)


def test_bad_settings_fail_clearly():
    from ppdet_lite.modeling.backbones.efficientnet import EfficientNet
    from ppdet_lite.modeling.necks.bifpn import BiFPN

    with pytest.raises(ValueError, match="b0"):
        EfficientNet(scale="b9")
    with pytest.raises(ValueError, match="weight_method"):
        BiFPN(weight_method="attn")

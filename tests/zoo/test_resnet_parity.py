"""ResNet-vd (+DCNv2) against PaddleDetection 2.6.0: same keys/shapes, same outputs, same freezing."""

import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.modeling.backbones.resnet import ResNet, block_name

from ._parity import assert_same_keys, import_ppdet, load_both, max_diffs, tensor, trainable

# PP-YOLO's backbone settings (configs/ppyolo/_base_/*.yml)
SETTINGS = {
    "r50vd_dcn": dict(depth=50, variant="d", return_idx=[1, 2, 3], dcn_v2_stages=[3], freeze_at=-1,
                      freeze_norm=False, norm_decay=0.),
    "r18vd": dict(depth=18, variant="d", return_idx=[2, 3], freeze_at=-1, freeze_norm=False,
                  norm_decay=0.),
    "r101vd_dcn": dict(depth=101, variant="d", return_idx=[1, 2, 3], dcn_v2_stages=[3],
                       freeze_at=-1, freeze_norm=False, norm_decay=0.),
}


@pytest.mark.parametrize("name", list(SETTINGS))
def test_resnet_matches_paddledetection(name):
    PDResNet = import_ppdet("ppdet.modeling.backbones.resnet").ResNet
    ours, theirs = ResNet(**SETTINGS[name]), PDResNet(**SETTINGS[name])
    assert_same_keys(ours, theirs)
    assert trainable(ours) == trainable(theirs)
    load_both(ours, theirs)
    x = tensor([1, 3, 64, 64])
    outs, ref = ours({"image": x}), theirs({"image": x})
    assert max(max_diffs(outs, ref)) <= 1e-4
    assert ours.out_channels == [c.channels for c in theirs.out_shape]
    assert [o.shape[1] for o in outs] == ours.out_channels
    assert [64 // o.shape[-1] for o in outs] == ours.out_strides


def test_dcn_offsets_change_the_output():
    """Non-zero offsets must move the sampling points (guards against a silently plain conv)."""
    import numpy as np

    net = ResNet(depth=18, variant="d", return_idx=[3], dcn_v2_stages=[3], freeze_at=-1)
    net.eval()
    x = tensor([1, 3, 64, 64])
    before = net({"image": x})[0].numpy()
    offset_conv = net.res5.res5a.branch2b.conv_offset
    offset_conv.bias.set_value(np.full(offset_conv.bias.shape, 0.7, "float32"))
    assert np.abs(net({"image": x})[0].numpy() - before).max() > 1e-3


@pytest.mark.parametrize("kw", [dict(freeze_at=0, freeze_norm=True), dict(freeze_at=2, freeze_norm=False),
                                dict(freeze_at=-1, freeze_norm=True)])
def test_freezing_matches_paddledetection(kw):
    PDResNet = import_ppdet("ppdet.modeling.backbones.resnet").ResNet
    args = dict(depth=18, variant="d", dcn_v2_stages=[3], norm_decay=0., **kw)
    ours, theirs = ResNet(**args), PDResNet(**args)
    frozen = {p.name: p.stop_gradient for p in ours.parameters()}
    ref = {p.name: p.stop_gradient for p in theirs.parameters()}
    assert list(frozen.values()) == list(ref.values())
    names = dict(ours.named_parameters())
    assert names["conv1.conv1_1.conv.weight"].stop_gradient == (kw["freeze_at"] >= 0)
    assert names["res5.res5a.branch2a.norm.weight"].stop_gradient == kw["freeze_norm"]
    assert ours.res3.res3a.branch2a.norm._use_global_stats == (True if kw["freeze_norm"] else None)


def test_block_names_and_stem_only_freeze():
    assert [block_name(4, 23, i) for i in (0, 1, 22)] == ["res4a", "res4b1", "res4b22"]
    assert [block_name(3, 4, i) for i in (0, 3)] == ["res3a", "res3d"]
    net = ResNet(depth=18, variant="b", freeze_at=3, freeze_norm=False, freeze_stem_only=True)
    assert all(p.stop_gradient for p in net.conv1.parameters())
    assert not any(p.stop_gradient for p in net.res2.parameters() if p.trainable)  # not BN stats


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="depth 42"):
        ResNet(depth=42)
    with pytest.raises(ConfigError, match="num_stages"):
        ResNet(depth=18, return_idx=[3], num_stages=3)
    with pytest.raises(ConfigError, match="norm_type"):
        ResNet(depth=18, norm_type="gn")


def test_training_step_matches_paddledetection():
    """Train mode (batch statistics) and gradients, DCN included, equal PaddleDetection's."""
    PDResNet = import_ppdet("ppdet.modeling.backbones.resnet").ResNet
    args = dict(depth=18, variant="d", return_idx=[2, 3], dcn_v2_stages=[3], freeze_at=0,
                freeze_norm=False)
    ours, theirs = ResNet(**args), PDResNet(**args)
    load_both(ours, theirs)
    ours.train()
    theirs.train()
    x = tensor([2, 3, 64, 64])
    for net in (ours, theirs):
        sum((o * o).mean() for o in net({"image": x})).backward()
    grads = {n: p.grad for n, p in theirs.named_parameters() if p.grad is not None}
    ours_grads = {n: p.grad for n, p in ours.named_parameters() if p.grad is not None}
    assert set(grads) == set(ours_grads) and "res5.res5a.branch2b.conv_offset.weight" in grads
    assert not any(n.startswith(("conv1.", "res2.")) for n in grads)  # freeze_at=0
    assert max(float((ours_grads[n] - g).abs().max()) for n, g in grads.items()) <= 1e-5
    stats = ours.res5.res5b.branch2b.norm._mean, theirs.res5.res5b.branch2b.norm._mean
    assert float((stats[0] - stats[1]).abs().max()) <= 1e-6


def test_deformable_conv_v2_matches_paddledetection():
    from ppdet_lite.modeling.dcn import DeformableConvV2

    PDDeform = import_ppdet("ppdet.modeling.layers").DeformableConvV2
    for bias in (False, True):
        ours = DeformableConvV2(8, 16, 3, stride=2, bias_attr=bias)
        theirs = PDDeform(8, 16, 3, stride=2, bias_attr=bias)
        assert_same_keys(ours, theirs)
        load_both(ours, theirs)
        x = tensor([2, 8, 9, 11])
        assert max(max_diffs([ours(x)], [theirs(x)])) <= 1e-5

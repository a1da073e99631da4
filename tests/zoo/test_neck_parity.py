"""PPYOLOFPN / PPYOLOPAN against PaddleDetection 2.6.0: same keys/shapes and outputs, eval mode."""

import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.modeling.necks.ppyolo_fpn import PPYOLOFPN
from ppdet_lite.modeling.necks.ppyolo_pan import PPYOLOPAN

from ._parity import assert_same_keys, import_ppdet, load_both, max_diffs, tensor, trainable

# (class name, constructor args, input maps shallow → deep): PaddleDetection's config values with
# small spatial sizes (>= 2 so CoordConv's (w - 1) normalisation stays finite).
CASES = {
    "fpn_r50vd_dcn": ("PPYOLOFPN", dict(in_channels=[512, 1024, 2048], coord_conv=True,
                                        drop_block=True, block_size=3, keep_prob=0.9, spp=True),
                      [[1, 512, 16, 16], [1, 1024, 8, 8], [1, 2048, 4, 4]]),
    "fpn_mbv3_large": ("PPYOLOFPN", dict(in_channels=[160, 368], coord_conv=True, conv_block_num=0,
                                         spp=True, drop_block=True),
                       [[1, 160, 8, 8], [1, 368, 4, 4]]),
    "fpn_r18vd": ("PPYOLOFPN", dict(in_channels=[256, 512], drop_block=True, conv_block_num=0),
                  [[1, 256, 8, 8], [1, 512, 4, 4]]),
    "pan_v2_r50vd_dcn": ("PPYOLOPAN", dict(in_channels=[512, 1024, 2048], drop_block=True,
                                           block_size=3, keep_prob=0.9, spp=True),
                         [[1, 512, 16, 16], [1, 1024, 8, 8], [1, 2048, 4, 4]]),
}
OURS = {"PPYOLOFPN": PPYOLOFPN, "PPYOLOPAN": PPYOLOPAN}


@pytest.mark.parametrize("case", list(CASES))
def test_neck_matches_paddledetection(case):
    name, kwargs, shapes = CASES[case]
    theirs = getattr(import_ppdet("ppdet.modeling.necks.yolo_fpn"), name)(**kwargs)
    ours = OURS[name](**kwargs)
    assert_same_keys(ours, theirs)
    assert trainable(ours) == trainable(theirs)
    assert ours.out_channels == [s.channels for s in theirs.out_shape]
    load_both(ours, theirs)
    feats = [tensor(s, seed=i) for i, s in enumerate(shapes)]
    outs, ref = ours(feats), theirs(feats)
    assert max(max_diffs(outs, ref)) <= 1e-4
    assert [o.shape[1] for o in outs] == ours.out_channels
    assert [o.shape[2] for o in outs] == [s[2] for s in shapes[::-1]]
    mot, ref_mot = ours(feats, for_mot=True), theirs(feats, for_mot=True)
    assert max(max_diffs(mot["emb_feats"], ref_mot["emb_feats"])) <= 1e-4


def test_dropblock_only_in_training():
    neck = PPYOLOFPN(in_channels=[16, 32], conv_block_num=0, drop_block=True, keep_prob=0.5)
    feats = [tensor([2, 16, 8, 8]), tensor([2, 32, 4, 4], seed=2)]
    neck.eval()
    a, b = neck(feats), neck(feats)
    assert max(max_diffs(a, b)) == 0.0
    neck.train()
    c = neck(feats)
    assert max(max_diffs(a, c)) > 1e-3


def test_bad_arguments_raise_config_error():
    with pytest.raises(ConfigError, match="conv_block_num"):
        PPYOLOFPN(in_channels=[16, 32], conv_block_num=1)
    with pytest.raises(ConfigError, match="in_channels"):
        PPYOLOPAN(in_channels=[])

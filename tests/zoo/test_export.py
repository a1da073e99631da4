"""ResNet-DCN + PPYOLOFPN/PPYOLOPAN survive paddle.jit.save/load with dynamic input sizes."""
import os

import paddle
import pytest

from ppdet_lite.modeling.backbones.resnet import ResNet
from ppdet_lite.modeling.necks.ppyolo_fpn import PPYOLOFPN
from ppdet_lite.modeling.necks.ppyolo_pan import PPYOLOPAN

from ._parity import max_diffs, tensor

pytestmark = pytest.mark.slow  # exports / converts / trains: the full suite runs it, -m "not slow" skips it


class _Net(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.backbone = ResNet(depth=18, variant="d", return_idx=[2, 3], dcn_v2_stages=[3])
        channels = self.backbone.out_channels
        self.fpn = PPYOLOFPN(in_channels=channels, coord_conv=True, conv_block_num=0, spp=True,
                             drop_block=True)
        self.pan = PPYOLOPAN(in_channels=channels, conv_block_num=2, spp=True, drop_block=True)

    def forward(self, image):
        feats = self.backbone({"image": image})
        return self.fpn(feats) + self.pan(feats)


def test_jit_save_load_dynamic_shape(tmp_path):
    net = _Net()
    net.eval()
    path = os.path.join(str(tmp_path), "net")
    paddle.jit.save(net, path, input_spec=[
        paddle.static.InputSpec([None, 3, None, None], "float32", name="image")])
    loaded = paddle.jit.load(path)
    for shape in ([1, 3, 64, 64], [2, 3, 96, 128]):
        x = tensor(shape)
        assert max(max_diffs(loaded(x), net(x))) <= 1e-4

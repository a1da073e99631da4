"""Shared layers, DropBlock statistics, empty-result padding, the builder and export-friendliness."""

import numpy as np
import paddle
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.modeling import build_model
from ppdet_lite.modeling.layers import SPP, ConvBNLayer, CoordConv, DropBlock, add_coord
from ppdet_lite.modeling.post_process import pad_empty_images

from .tiny_cfg import tiny_cfg

paddle.set_device("cpu")


def _copy_random(ref, ours, seed=0):
    rng = np.random.RandomState(seed)
    sd = ref.state_dict()
    assert list(sd) == list(ours.state_dict())
    new = {k: (np.abs(rng.randn(*v.shape)) + 0.5 if k.endswith("_variance")
               else rng.randn(*v.shape)).astype("float32") for k, v in sd.items()}
    ref.set_state_dict(new)
    ours.set_state_dict(new)
    ref.eval(), ours.eval()


@pytest.mark.parametrize("act", ["leaky", "mish", "relu"])
def test_conv_bn_layer_matches_paddledetection(act):
    pytest.importorskip("ppdet", reason="PaddleDetection 2.6.0 is the parity oracle")
    from ppdet.modeling.backbones.darknet import ConvBNLayer as Ref
    ref = Ref(8, 16, 3, stride=2, padding=1, act=act)
    ours = ConvBNLayer(8, 16, 3, stride=2, padding=1, act=act)
    _copy_random(ref, ours)
    x = paddle.randn([2, 8, 9, 9])
    assert float((ref(x) - ours(x)).abs().max()) <= 1e-5
    assert ours.batch_norm._epsilon == 1e-5 and ours.batch_norm._momentum == 0.9


def test_spp_and_coordconv_match_paddledetection():
    pytest.importorskip("ppdet", reason="PaddleDetection 2.6.0 is the parity oracle")
    from ppdet.modeling.necks.yolo_fpn import SPP as RefSPP, CoordConv as RefCoord
    x = paddle.randn([2, 8, 13, 11])
    for ref, ours in [(RefSPP(32, 8, 1, [5, 9, 13]), SPP(32, 8, 1, [5, 9, 13])),
                      (RefCoord(8, 16, 3, 1, "bn"), CoordConv(8, 16, 3, 1, "bn"))]:
        _copy_random(ref, ours)
        assert float((ref(x) - ours(x)).abs().max()) <= 1e-5
    gx, gy = add_coord(x, "NCHW")
    # PaddleDetection's coordinates span [-1, -0.5] (its formula, kept for checkpoint parity)
    assert gx.shape == [2, 1, 13, 11] and float(gx.min()) == -1. and float(gy.max()) == -0.5


def test_conv_bn_layer_without_activation():
    layer = ConvBNLayer(4, 4, 1, act=None)
    layer.eval()
    x = paddle.randn([1, 4, 3, 3])
    bn = layer.batch_norm
    expected = layer.conv(x) / paddle.sqrt(bn._variance.reshape([1, 4, 1, 1]) + 1e-5)
    assert float((layer(x) - expected).abs().max()) <= 1e-5


def test_dropblock_is_identity_in_eval_and_keeps_keep_prob_in_train():
    paddle.seed(0)
    x = paddle.ones([8, 16, 32, 32])
    block = DropBlock(block_size=3, keep_prob=0.9)
    block.eval()
    assert block(x) is x
    block.train()
    y = block(x).numpy()
    kept = (y > 0).mean()
    assert abs(kept - 0.9) < 0.02  # gamma's correction makes the kept fraction ≈ keep_prob
    np.testing.assert_allclose(y[y > 0], 1. / kept, rtol=1e-4)  # survivors rescaled by numel/sum
    assert abs(y.mean() - 1.) < 1e-4
    assert DropBlock(3, 1.0)(x) is x


def test_pad_empty_images_inserts_one_dummy_row_per_empty_image():
    bbox = paddle.to_tensor(np.arange(18, dtype="float32").reshape(3, 6))
    out, num = pad_empty_images(bbox, paddle.to_tensor([2, 0, 1], dtype="int32"))
    assert num.numpy().tolist() == [2, 1, 1]
    dummy = [0., 0., 0., 0., 1., 1.]
    np.testing.assert_array_equal(out.numpy(), [bbox.numpy()[0], bbox.numpy()[1], dummy,
                                                bbox.numpy()[2]])
    out, num = pad_empty_images(paddle.zeros([0, 6]), paddle.to_tensor([0, 0], dtype="int32"))
    assert num.numpy().tolist() == [1, 1] and out.numpy().tolist() == [dummy, dummy]
    out, num = pad_empty_images(bbox, paddle.to_tensor([3], dtype="int32"))
    assert num.numpy().tolist() == [3] and (out.numpy() == bbox.numpy()).all()


def _inputs(n=2, size=96):
    return {"image": paddle.randn([n, 3, size, size]),
            "im_shape": paddle.to_tensor([[size, size]] * n, dtype="float32"),
            "scale_factor": paddle.to_tensor([[1., 1.]] * n, dtype="float32")}


@pytest.fixture(scope="module")
def tiny():
    paddle.seed(0)
    cfg = tiny_cfg(num_classes=3)
    cfg["YOLOv3Head"] = dict(cfg["YOLOv3Head"], obj_bias_init=-4.6, cls_bias_init=-2.0)
    model = build_model(cfg)
    model.eval()
    return model


def test_builder_wires_channels_and_bias_init(tiny):
    assert tiny.backbone.out_channels == [24, 56, 80]
    assert tiny.neck.out_channels == [160, 128, 96]
    assert tiny.yolo_head.in_channels == [160, 128, 96]
    assert tiny.yolo_head.loss.num_classes == 3 and tiny.yolo_head.loss.iou_loss.loss_weight == 2.5
    assert tiny.post_process.decode.num_classes == 3
    bias = tiny.yolo_head.yolo_outputs[0].bias.numpy().reshape(3, 8)
    np.testing.assert_allclose(bias[:, 4], -4.6)
    np.testing.assert_allclose(bias[:, 5:], -2.0)
    assert tiny.yolo_head.yolo_outputs[0].skip_quant is True


def test_eval_outputs_and_export_switches(tiny):
    inputs = _inputs()
    with paddle.no_grad():
        out = tiny(inputs)
        assert out["bbox"].shape[1] == 6 and out["bbox_num"].shape == [2]
        assert int(out["bbox_num"].sum()) == out["bbox"].shape[0]
        tiny.exclude_nms = True
        raw = tiny(inputs)
        tiny.exclude_nms, tiny.exclude_post_process = False, True
        heads = tiny(inputs)
    tiny.exclude_post_process = False
    m = 3 * (3 * 3 + 6 * 6 + 12 * 12)
    assert raw["boxes"].shape == [2, m, 4] and raw["scores"].shape == [2, 3, m]
    assert [h.shape for h in heads["head_outs"]] == [[2, 24, 3, 3], [2, 24, 6, 6], [2, 24, 12, 12]]


def test_empty_result_gives_dummy_rows(tiny):
    decode = tiny.post_process.decode
    old, decode.conf_thresh = decode.conf_thresh, 1.1  # nothing can pass
    try:
        with paddle.no_grad():
            out = tiny(_inputs())
    finally:
        decode.conf_thresh = old
    assert out["bbox_num"].numpy().tolist() == [1, 1]
    assert out["bbox"].numpy().tolist() == [[0., 0., 0., 0., 1., 1.]] * 2


def test_builder_errors_name_the_key():
    cfg = tiny_cfg()
    cfg["PPYOLOTinyFPN"] = dict(cfg["PPYOLOTinyFPN"], keep_prb=0.9)
    with pytest.raises(ConfigError, match="keep_prob"):
        build_model(cfg)
    cfg = tiny_cfg()
    cfg["YOLOv3"] = dict(cfg["YOLOv3"], neck="PPYOLOTinyFNP")
    with pytest.raises(ConfigError, match="PPYOLOTinyFPN"):
        build_model(cfg)
    with pytest.raises(ConfigError, match="architecture"):
        build_model({})


def test_export_graph_is_lite_friendly(tiny, tmp_path):
    """to_static + jit.save works and the graph has no flatten and no 0-D fill_constant."""
    from paddle.base.proto import framework_pb2
    spec = [{"image": paddle.static.InputSpec([None, 3, 96, 96], "float32", "image"),
             "im_shape": paddle.static.InputSpec([None, 2], "float32", "im_shape"),
             "scale_factor": paddle.static.InputSpec([None, 2], "float32", "scale_factor")}]
    static = paddle.jit.to_static(tiny, input_spec=spec, full_graph=True)
    paddle.jit.save(static, str(tmp_path / "model"))
    prog = framework_pb2.ProgramDesc()
    prog.ParseFromString((tmp_path / "model.pdmodel").read_bytes())
    ops = prog.blocks[0].ops
    types = {op.type for op in ops}
    assert {"yolo_box", "multiclass_nms3"} <= types
    assert not any("flatten" in t for t in types)
    for op in ops:
        if op.type == "fill_constant":
            shape = [a for a in op.attrs if a.name == "shape"][0].longs
            assert len(shape) > 0, "0-D fill_constant: Paddle Lite rejects it"

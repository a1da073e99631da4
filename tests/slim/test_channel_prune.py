"""Pruning through concats (``ppdet_lite.slim.channel_graph``): a pruned model computes what the
unpruned one computes with the pruned channels zeroed (PP-YOLO Tiny, R50vd with CoordConv / SPP /
DCN, MBv3-large, YOLOv4-tiny with its channel splits), PaddleDetection's PP-YOLO prune lists are
accepted whole at their reported FLOPs cuts, and a pruned model reloads, exports and runs in
Paddle Inference and ONNX Runtime."""
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import ppdet_lite
from ppdet_lite.core import create
from ppdet_lite.engine.model_stats import traceable
from ppdet_lite.modeling.random_weights import randomize
from ppdet_lite.slim import load_slim_config
from ppdet_lite.slim import prune as P

from .helpers import ROOT

SIZE = 64


def config(name):
    return ppdet_lite.load_config(os.path.join(ROOT, "configs", name))


def shipped_list(config_name, slim_name):
    cfg, _ = load_slim_config(os.path.join(ROOT, "configs", config_name),
                              os.path.join(ROOT, "configs", "slim", "prune", slim_name),
                              {"pretrain_weights": ""})
    return cfg, create("Pruner", cfg["Pruner"])


def images(n=2, seed=1):
    x = np.random.RandomState(seed).randn(n, 3, SIZE, SIZE).astype("float32")
    return {"image": paddle.to_tensor(x), "im_shape": paddle.full([n, 2], float(SIZE)),
            "scale_factor": paddle.ones([n, 2])}


def head_outs(model, inputs):
    with paddle.no_grad(), traceable(model):
        return [o.numpy() for o in model(inputs)["head_outs"]]


def zeroed(cfg, state, plan):
    """The unpruned model with every pruned channel silenced: the producing convs' filters and
    biases and the BatchNorms' scale and shift at the removed output positions set to 0 (so the
    BN output is 0, and so is the activation after it); consumers' inputs are left whole."""
    for act in (F.leaky_relu, F.relu, F.hardswish, F.mish):  # the activations these models use
        assert float(act(paddle.zeros([1]))) == 0.0
    model = ppdet_lite.build_model(cfg)
    model.set_state_dict(state)
    model.eval()
    layers = dict(model.named_sublayers())
    for path, (out, _) in plan.removed.items():
        for tensor in (layers[path].weight, getattr(layers[path], "bias", None)):
            if tensor is not None and out:
                value = tensor.numpy()
                value[out] = 0
                tensor.set_value(value)
    return model


def prune_and_compare(cfg, layers, ratio=None, ratios=None):
    """Prune a BN-calibrated random model; returns (max |pruned - zeroed| / max |zeroed|,
    max |zeroed|, plan, pruned model)."""
    model = ppdet_lite.build_model(cfg)
    randomize(model, size=SIZE)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    graph = P.make_pruner(model, "fpgm", (3, SIZE, SIZE))
    layers = P.prunable_layers(model, graph) if layers == "all" else layers
    plan = P.apply_ratios(model, graph, ratios or {k: ratio for k in layers})
    inputs = images()
    got, ref = head_outs(model, inputs), head_outs(zeroed(cfg, state, plan), inputs)
    assert [g.shape for g in got] == [r.shape for r in ref]
    diff = max(float(np.abs(g - r).max()) for g, r in zip(got, ref))
    scale = max(float(np.abs(r).max()) for r in ref)
    return diff / scale, scale, plan, model


def cut_inputs(plan, path):
    return len(plan.removed.get(path, ([], []))[1])


def test_tiny_every_prunable_layer_keeps_the_function():
    diff, scale, plan, model = prune_and_compare(config("ppyolo_tiny.yml"), "all", 0.5)
    assert diff < 1e-6 and scale > 0.1, (diff, scale)
    # the SPP conv reads its input 4 times (x and 3 pools): every copy loses the same channels
    spp_in = P.conv_layers(model)["neck.spp"].weight.shape[1]
    assert spp_in % 4 == 0 and cut_inputs(plan, "neck.spp.conv.conv") == 4 * 80 - spp_in
    # block 1 reads concat(upsampled transition 0, backbone map): both sides are cut
    block1 = "neck.yolo_block.1.conv_module.yolo_block.1.0.conv"
    assert cut_inputs(plan, block1) == 160 + 56 - P.conv_layers(model)[block1[:-5]].weight.shape[1]
    assert P.conv_layers(model)["neck.yolo_transition.0"].weight.shape[0] == 80


def test_yolov4_tiny_channel_splits_stay_whole_and_concats_are_cut():
    cfg = config("yolov4_tiny.yml")
    diff, scale, plan, model = prune_and_compare(cfg, "all", 0.5)
    assert diff < 1e-6 and scale > 0.1, (diff, scale)
    allowed = P.prunable_layers(model, P.make_pruner(model, "fpgm", (3, SIZE, SIZE)))
    # conv1's output is split in halves (route groups): neither half may change size
    assert not [k for k in allowed if k.endswith(".conv1")]
    assert P.conv_layers(model)["backbone.blocks.0.conv1"].weight.shape[0] == 64
    assert P.conv_layers(model)["backbone.blocks.0.conv3"].weight.shape[0] == 16  # 32, half cut


@pytest.mark.slow  # R50vd-DCN traced and pruned: ~5 s
def test_r50_paddledetection_list_and_more_keep_the_function():
    cfg, pruner = shipped_list("ppyolo_r50vd_dcn.yml", "ppyolo_r50vd_prune_fpgm.yml")
    ratios = dict(pruner.ratios, **{  # concat inputs beyond PaddleDetection's list, DCN inputs
        "neck.yolo_block.0.conv_module.conv0": 0.5, "neck.yolo_transition.0": 0.5,
        "neck.yolo_transition.1": 0.5, "backbone.res5.res5c.branch2c": 0.5,
        "backbone.res5.res5b.branch2a": 0.5})
    diff, scale, plan, model = prune_and_compare(cfg, None, ratios=ratios)
    assert diff < 1e-6 and scale > 0.1, (diff, scale)
    convs = P.conv_layers(model)
    assert convs["neck.yolo_block.0.conv_module.conv2"].weight.shape[0] == 128   # 512 at 0.75
    assert convs["neck.yolo_block.2.tip"].weight.shape[0] == 32                  # 256 at 0.875
    # the residual chain of res5 went with branch2c: every shortcut and branch2c, and the neck
    assert convs["backbone.res5.res5a.short"].weight.shape[0] == 1024
    assert convs["neck.yolo_block.0.conv_module.conv0"].weight.shape[1] == 1024 + 2


def test_mbv3_paddledetection_list_keeps_the_function():
    cfg, pruner = shipped_list("ppyolo_mbv3_large.yml", "ppyolo_mbv3_large_prune_fpgm.yml")
    assert len(pruner.pruned_params) == 6
    diff, scale, _, model = prune_and_compare(cfg, None, ratios=pruner.ratios)
    assert diff < 1e-6 and scale > 0.1, (diff, scale)
    assert P.conv_layers(model)["neck.yolo_transition.0"].weight.shape[0] == 64  # 256 at 0.75


@pytest.mark.parametrize("config_name, slim_name, size, layers, cut", [
    ("ppyolo_mbv3_large.yml", "ppyolo_mbv3_large_prune_fpgm.yml", 320, 6, 0.37),  # its -37%
    pytest.param("ppyolo_r50vd_dcn.yml", "ppyolo_r50vd_prune_fpgm.yml", 608, 18, 0.35,  # its -35%
                 marks=pytest.mark.slow),
])
def test_paddledetection_lists_cut_the_flops_it_reports(config_name, slim_name, size, layers, cut):
    cfg, pruner = shipped_list(config_name, slim_name)
    assert len(pruner.pruned_params) == layers
    pruner(ppdet_lite.build_model(cfg), (3, size, size))
    assert abs(pruner.report["flops_cut"] - cut) < 0.01, pruner.report


@pytest.fixture(scope="module")
def pruned_tiny():
    cfg = config("ppyolo_tiny.yml")
    model = ppdet_lite.build_model(cfg)
    randomize(model, size=SIZE)
    graph = P.make_pruner(model, "l1_norm", (3, SIZE, SIZE))
    P.apply_ratios(model, graph, {k: 0.5 for k in P.prunable_layers(model, graph)})
    return cfg, model


def test_pruned_checkpoint_with_concat_inputs_loads_into_a_fresh_model(pruned_tiny):
    cfg, model = pruned_tiny
    fresh = P.load_pruned_weights(ppdet_lite.build_model(cfg),
                                  {k: v.numpy() for k, v in model.state_dict().items()})
    fresh.eval()
    inputs = images()
    for a, b in zip(head_outs(model, inputs), head_outs(fresh, inputs)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_pruned_model_exports_and_runs_in_paddle_inference_and_onnx(pruned_tiny, tmp_path):
    from ppdet_lite.export.jit import export_model
    from ppdet_lite.export.inference import inference_predictor, run_inference
    from ppdet_lite.export.onnx_export import export_onnx, onnx_run

    cfg, model = pruned_tiny
    ref = head_outs(model, images())
    cfg = ppdet_lite.load_config(os.path.join(ROOT, "configs", "ppyolo_tiny.yml"), {
        "TestReader.inputs_def.image_shape": [3, SIZE, SIZE], "export.post_process": False})
    export = P.load_pruned_weights(ppdet_lite.build_model(cfg), model.state_dict())
    model_dir = export_model(cfg, str(tmp_path), model=export)
    image = images()["image"].numpy()
    predictor = inference_predictor(model_dir)
    for n in range(2):
        for r, g in zip(ref, run_inference(predictor, {"image": image[n:n + 1]})):
            np.testing.assert_allclose(g[0], r[n], rtol=0, atol=1e-4)
    onnx = export_onnx(model_dir)  # checks onnxruntime against Paddle Inference itself
    for r, g in zip(ref, onnx_run(onnx, {"image": image[:1]})):
        np.testing.assert_allclose(g[0], r[0], rtol=0, atol=1e-4)

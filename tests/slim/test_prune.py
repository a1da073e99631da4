"""Filter pruning of PP-YOLO Tiny by stable layer names: the FLOPs cut, sensitivity and ratio
proposal, training after pruning, and reloading a pruned checkpoint without the pruner (pruning
through concats: test_channel_prune.py)."""
import os

import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.slim import load_slim_config
from ppdet_lite.slim import prune as P

from .helpers import ROOT, SIZE, eval_inputs, fixed_batch, overrides, train_steps

SHAPE = (3, SIZE, SIZE)
TIP = "neck.yolo_block.0.tip"
BLOCK2_IN = "neck.yolo_block.2.conv_module.yolo_block.2.0"


@pytest.fixture(scope="module")
def tiny_model():
    paddle.set_device("cpu")
    cfg = ppdet_lite.load_config(os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml"))
    return ppdet_lite.build_model(cfg)


def test_layer_names_resolve_in_every_spelling(tiny_model):
    for name in (TIP, TIP + ".conv", TIP + ".conv.weight"):
        assert P.resolve_layer(tiny_model, name) == TIP
    assert P.resolve_layer(tiny_model, "backbone.conv13.expand_conv") == "backbone.conv13.expand_conv"
    # a prefix holding exactly one conv resolves to it
    assert P.resolve_layer(tiny_model, "neck.yolo_transition.0") == "neck.yolo_transition.0"


def test_unknown_layer_name_is_rejected_with_close_names(tiny_model):
    with pytest.raises(ConfigError) as e:
        P.resolve_layer(tiny_model, "neck.yolo_block.0.tipp")
    msg = str(e.value)
    assert "'neck.yolo_block.0.tipp'" in msg and "closest names" in msg and TIP in msg
    with pytest.raises(ConfigError, match="generated parameter name"):
        P.resolve_layer(tiny_model, "conv2d_56.w_0")
    with pytest.raises(ConfigError, match="holds 5 convs") as e:
        P.resolve_layer(tiny_model, "neck.yolo_block.0")
    assert TIP in str(e.value)


@pytest.mark.parametrize("config, slim_config", [
    ("ppyolo_tiny_shapes.yml", "prune/ppyolo_tiny_shapes_prune_fpgm.yml"),
    ("ppyolo_tiny_shapes.yml", "distill/ppyolo_tiny_shapes_distill_prune.yml"),
    ("ppyolo_r50vd_dcn.yml", "prune/ppyolo_r50vd_prune_fpgm.yml"),
    ("ppyolo_mbv3_large.yml", "prune/ppyolo_mbv3_large_prune_fpgm.yml"),
    ("ppyolo_mbv3_small.yml", "distill/ppyolo_mbv3_small_distill_prune.yml"),
])
def test_shipped_prune_configs_name_layers_of_their_model(config, slim_config):
    cfg, slim = load_slim_config(os.path.join(ROOT, "configs", config),
                                 os.path.join(ROOT, "configs", "slim", slim_config), {"pretrain_weights": ""})
    section = (cfg if cfg["slim"] == "Pruner" else slim)["Pruner"]
    pruner = ppdet_lite.core.create("Pruner", section)
    assert len(pruner.pruned_params) == len(pruner.pruned_ratios) > 0
    model = ppdet_lite.build_model(cfg)
    convs = P.conv_layers(model)
    for name in pruner.pruned_params:
        assert convs[P.resolve_layer(model, name)]._groups == 1, name


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    """A Tiny model (96 px): sensitivity of two layers, a small proposal, then the demo config's
    18-layer prune; plus its trainer and a fixed batch."""
    from ppdet_lite.engine.trainer import Trainer

    paddle.set_device("cpu")
    paddle.seed(0)
    tmp = tmp_path_factory.mktemp("prune")
    slim = os.path.join(ROOT, "configs", "slim", "prune", "ppyolo_tiny_shapes_prune_fpgm.yml")
    cfg, _ = load_slim_config(os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml"), slim,
                              overrides(str(tmp)))  # tiny data; the slim file's Pruner
    trainer = Trainer(cfg, "train", seed=0)
    model = trainer.model
    flops0, params0 = P.count_flops(model, SHAPE), P.count_params(model)
    slim_pruner = P.make_pruner(model, "fpgm", SHAPE)

    table = P.sensitivity(model, slim_pruner, [TIP, BLOCK2_IN], lambda m: P.count_params(m) / 1e6,
                          ratios=(0.25, 0.5), image_shape=SHAPE)

    def measure(ratios):
        plan = P.apply_ratios(model, slim_pruner, ratios)
        cut = 1 - P.count_flops(model, SHAPE) / flops0
        plan.restore(model)
        return cut
    proposal = P.propose_ratios(table, 0.08, measure)
    restored_flops = P.count_flops(model, SHAPE)

    pruner = ppdet_lite.core.create("Pruner", cfg["Pruner"])
    pruner(model, SHAPE, pruner=slim_pruner)
    return dict(cfg=cfg, trainer=trainer, model=model, pruner=pruner, table=table, proposal=proposal,
                flops0=flops0, params0=params0, restored_flops=restored_flops, slim_pruner=slim_pruner)


@pytest.mark.slow
def test_sensitivity_measures_each_layer_and_ratio_then_restores(pruned):
    table = pruned["table"]
    assert table["_baseline"] == pytest.approx(pruned["params0"] / 1e6)
    for layer in (TIP, BLOCK2_IN):
        row = table[layer]
        assert sorted(row) == [0.25, 0.5]
        assert 0 < row[0.25]["flops_cut"] < row[0.5]["flops_cut"] < 0.2
        assert 0 < row[0.25]["loss"] < row[0.5]["loss"]  # the metric here: parameters left (M)
    assert pruned["restored_flops"] == pruned["flops0"], "plan.restore brings the model back"
    text = P.format_sensitivity(table)
    assert TIP in text and BLOCK2_IN in text and "0.50" in text


def test_proposal_reaches_the_flops_target_cheapest_first(pruned):
    ratios, cut = pruned["proposal"]
    assert cut >= 0.08
    table = pruned["table"]
    # the block-2 1x1 removes more FLOPs per parameter lost than the tip, so it is raised first
    assert BLOCK2_IN in ratios and ratios[BLOCK2_IN] >= ratios.get(TIP, 0.0)
    assert set(ratios) <= {TIP, BLOCK2_IN} and all(r in table[k] for k, r in ratios.items())


def test_demo_pruner_cuts_over_40_percent_of_flops(pruned):
    report, model = pruned["pruner"].report, pruned["model"]
    assert report["flops_before"] == pruned["flops0"]
    assert 0.40 <= report["flops_cut"] <= 0.55, report
    assert P.count_flops(model, SHAPE) == report["flops_after"]
    assert report["params_after"] < 0.6 * report["params_before"]
    convs = P.conv_layers(model)
    assert convs[TIP].weight.shape[0] == 64                      # 160 filters, 60% pruned
    assert convs["neck.yolo_block.0.conv_module.yolo_block.0.1"]._groups == 64  # its depthwise follows
    assert convs["backbone.conv13.expand_conv"].weight.shape[0] == 168      # 336, 50% pruned
    assert not [k for k in model.state_dict() if k.endswith("_backup")]


def test_pruned_model_still_trains(pruned):
    trainer = pruned["trainer"]
    trainer.rebuild_optimizer()
    batch = fixed_batch(trainer)
    losses = [step["loss"] for step in train_steps(trainer.model, trainer.optimizer, batch, 6)]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses


def test_pruned_checkpoint_loads_into_a_fresh_model(pruned):
    model = pruned["model"]
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    fresh = ppdet_lite.build_model(pruned["cfg"])
    P.load_pruned_weights(fresh, state)
    assert P.count_params(fresh) == P.count_params(model)
    batch = fixed_batch(pruned["trainer"])
    outs = []
    for m in (model, fresh):
        m.eval()
        m.exclude_post_process = True
        outs.append([o.numpy() for o in m(eval_inputs(batch))["head_outs"]])
        m.exclude_post_process = False
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_head_outputs_and_bad_ratios_are_refused_and_a_used_graph_is_not_reused(pruned):
    model, graph = pruned["model"], pruned["slim_pruner"]
    # a head output's channels are the graph's outputs (anchors x (5 + classes)): they stay
    with pytest.raises(ConfigError, match="cannot be pruned"):
        P.apply_ratios(model, graph, {"yolo_head.yolo_output.0": 0.5})
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\)"):
        P.apply_ratios(model, graph, {TIP: 1.0})
    # the graph pruned this model: its channel positions are stale until traced again
    with pytest.raises(RuntimeError, match="already pruned"):
        P.apply_ratios(model, graph, {"neck.yolo_transition.0": 0.5})

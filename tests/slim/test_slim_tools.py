"""``--slim_config`` in tools/train.py, eval.py, infer.py and export_model.py, run as a user would
(subprocesses on the shapes demo's slim configs, tiny budgets): a pruned, a QAT and a
distilled-and-pruned model train, evaluate, predict and export to models Paddle Inference runs."""
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

import ppdet_lite
from ppdet_lite.export.inference import inference_predictor, run_inference
from ppdet_lite.export.program_edit import program_ops
from ppdet_lite.slim import load_slim_config
from ppdet_lite.slim.quant import random_inputs

from .helpers import ROOT, SIZE, overrides

PRUNE = os.path.join(ROOT, "configs", "slim", "prune", "ppyolo_tiny_shapes_prune_fpgm.yml")
QAT_CFG = os.path.join(ROOT, "configs", "slim", "quant", "ppyolo_tiny_shapes_qat.yml")
DEMO = os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml")


def tool(name, *args, cwd, folder="tools"):
    """Run <folder>/<name>.py; returns its output (stdout + stderr), failing the test on exit != 0."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, folder, f"{name}.py"), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{folder}/{name}.py {' '.join(args)} failed:\n{out[-4000:]}"
    return out


def opts(tmp, **extra):
    """The small-run overrides as ``-o key=value`` words (values in YAML flow style)."""
    return ["-o"] + [f"{k}={yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()}"
                     for k, v in overrides(str(tmp), **extra).items()]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A temporary directory with 'trained' (randomly initialised) FP32 demo weights in it."""
    tmp = tmp_path_factory.mktemp("slim_tools")
    paddle.set_device("cpu")
    paddle.seed(0)
    model = ppdet_lite.build_model(ppdet_lite.load_config(DEMO))
    paddle.save(model.state_dict(), str(tmp / "base.pdparams"))
    return tmp


def params_of(weights):
    return sum(int(np.prod(v.shape)) for v in paddle.load(weights).values())


@pytest.mark.slow  # trains through the tools in subprocesses
def test_prune_train_eval_infer_export(work):
    base = str(work / "base.pdparams")
    out = tool("train", "-c", DEMO, "--slim_config", PRUNE, *opts(work, pretrain_weights=base), cwd=work)
    assert "pruned 18 layers (fpgm)" in out
    final = work / "output" / "ppyolo_tiny_shapes_prune_fpgm" / "model_final.pdparams"
    assert params_of(str(final)) < 0.6 * params_of(base)  # the checkpoint holds the pruned model
    out = tool("train", "-c", DEMO, "--slim_config", PRUNE, "-r", str(final)[:-len(".pdparams")],
               *opts(work, pretrain_weights=base, epoch=2), cwd=work)
    assert "at epoch 1" in out and "Epoch [1/2]" in out  # resumed into the pruned model

    w = ["weights=" + str(final)]
    out = tool("eval", "-c", DEMO, "--slim_config", PRUNE, *opts(work), *w, cwd=work)
    assert "bbox mAP@[.5:.95]" in out
    image = next((work / "shapes").rglob("*.jpg"))
    out = tool("infer", "-c", DEMO, "--slim_config", PRUNE, "--infer_img", str(image), "--draw_threshold",
               "0.0", "--output_dir", str(work / "vis"), *opts(work), *w, cwd=work)
    assert (work / "vis" / image.name).is_file()
    tool("export_model", "-c", DEMO, "--slim_config", PRUNE, "--output_dir", str(work / "inference"),
         *opts(work), *w, cwd=work)
    tool("export_model", "-c", DEMO, "--output_dir", str(work / "inference"),
         *opts(work), "weights=" + base, cwd=work)
    pruned_dir = work / "inference" / "ppyolo_tiny_shapes_prune_fpgm"
    full = os.path.getsize(work / "inference" / "ppyolo_tiny_shapes" / "model.pdiparams")
    assert os.path.getsize(pruned_dir / "model.pdiparams") < 0.6 * full
    bbox, bbox_num = run_inference(inference_predictor(str(pruned_dir)), random_inputs([3, SIZE, SIZE]))[:2]
    assert bbox.shape[1] == 6 and int(bbox_num.sum()) == bbox.shape[0]


@pytest.mark.slow  # trains through the tools in subprocesses
def test_qat_train_then_export_int8(work):
    base = str(work / "base.pdparams")
    tool("train", "-c", DEMO, "--slim_config", QAT_CFG, *opts(work, pretrain_weights=base), cwd=work)
    final = work / "output" / "ppyolo_tiny_shapes_qat" / "model_final.pdparams"
    tool("export_model", "-c", DEMO, "--slim_config", QAT_CFG, "--output_dir", str(work / "inference"),
         *opts(work), "weights=" + str(final), cwd=work)
    save_dir = work / "inference" / "ppyolo_tiny_shapes_qat"
    ops = program_ops(str(save_dir / "model.pdmodel"))
    assert ops & {"quantize_linear", "fake_quantize_moving_average_abs_max",
                  "fake_quantize_dequantize_moving_average_abs_max"}, sorted(ops)
    bbox, bbox_num = run_inference(inference_predictor(str(save_dir)), random_inputs([3, SIZE, SIZE]))[:2]
    assert bbox.shape[1] == 6


@pytest.mark.slow  # trains through the tools in subprocesses
def test_distill_prune_trains_the_pruned_student(work):
    slim = work / "distill_prune.yml"
    slim.write_text(yaml.safe_dump({
        "_BASE_": [DEMO], "pretrain_weights": str(work / "base.pdparams"), "slim": "DistillPrune",
        "distill_loss": "DistillYOLOv3Loss", "DistillYOLOv3Loss": {"weight": 1000},
        "Pruner": {"criterion": "l1_norm", "pruned_params": ["neck.yolo_block.0.tip"],
                   "pruned_ratios": [0.5]}}))
    out = tool("train", "-c", DEMO, "--slim_config", str(slim), *opts(work), cwd=work)
    assert "starts from the teacher's weights" in out and "distill_loss" in out
    final = work / "output" / "distill_prune" / "model_final.pdparams"
    assert list(paddle.load(str(final))["neck.yolo_block.0.tip.conv.weight"].shape)[0] == 80  # 160 / 2
    out = tool("eval", "-c", DEMO, "--slim_config", str(slim), *opts(work), "weights=" + str(final), cwd=work)
    assert "bbox mAP@[.5:.95]" in out


@pytest.mark.parametrize("name", ["train", "export_model"])
def test_ptq_config_in_tools_points_to_post_quant(work, name):
    ptq = os.path.join(ROOT, "configs", "slim", "post_quant", "ppyolo_tiny_shapes_ptq.yml")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", f"{name}.py"), "-c", DEMO,
                           "--slim_config", ptq, *opts(work), "weights=" + str(work / "base.pdparams")],
                          cwd=work, capture_output=True, text=True)
    assert proc.returncode == 2 and "slim/post_quant.py" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow  # trains through the tools in subprocesses
def test_prune_distill_story_end_to_end(work):
    """slim/prune_distill.py on the demo slim config: its wider teacher, the student from its own
    weights pruned by the config's ratios, a plain and a distilled fine-tune for two seeds, exports,
    the best fine-tune post-training quantized and the table. (The sensitivity scan and the other losses have tests of their own in
    test_prune.py / test_distill.py: here they would double the suite's longest test.)"""
    slim = os.path.join(ROOT, "configs", "slim", "distill", "ppyolo_tiny_shapes_distill_prune.yml")
    paddle.seed(1)
    teacher = ppdet_lite.build_model(load_slim_config(DEMO, slim)[1])
    paddle.save(teacher.state_dict(), str(work / "teacher.pdparams"))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "slim", "prune_distill.py"), "--teacher_weights",
         str(work / "teacher.pdparams"), "--student_weights", str(work / "base.pdparams"),
         "--epochs", "1", "--seeds", "0", "1",
         "--output_dir", str(work / "story"), *opts(work), "PTQ.quant_batch_num=2"],
        cwd=work, capture_output=True, text=True, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    table = out[out.index("model "):]
    rows = ["teacher", "baseline", "pruned (no tune)"] + [
        f"{v} seed {s}" for s in (0, 1) for v in ("pruned+tuned", "pruned+distilled")]
    for row in rows:
        assert f"\n{row} " in table, table
    best = max(rows[3:], key=lambda r: float(re.search(rf"\n{re.escape(r)} +(\d\.\d+)", table).group(1)))
    ptq = re.search(rf"\nPTQ int8 of {re.escape(best)} +(\d\.\d+) .* FLOPs -\d+%", table)
    assert ptq, table  # the best fine-tune (by mAP), quantized, evaluated and timed
    sizes = {r: float(re.search(rf"\n{re.escape(r)} +(?:\S+ +){{4}}(\d+\.\d+)", table).group(1))
             for r in (best, f"PTQ int8 of {best}")}
    assert sizes[f"PTQ int8 of {best}"] < 0.7 * sizes[best], table  # int8 weights (1.06 vs 1.89 MiB)
    assert (work / "story" / f"ppyolo_tiny_shapes_distill_prune{'_plain' * ('tuned' in best)}_seed{best[-1]}_ptq"
            / "model.pdmodel").is_file()
    cuts = [int(c) for c in re.findall(r"FLOPs -(\d+)%", table)]
    assert len(cuts) == 6 and min(cuts) >= 50, table  # every pruned row: the config's -52 %
    assert "FLOPs +" in table  # the teacher, larger than the baseline
    assert "mean over seeds [0, 1]" in out and "pruning cost" in out
    assert re.search(r"pruned\+distilled: \d\.\d{3}(, recovers -?\d+% of it)?, [+-]\d\.\d{3} over the plain", out)
    for run in ("ppyolo_tiny_shapes_distill_prune_seed1", "ppyolo_tiny_shapes_distill_prune_plain_seed0"):
        assert (work / "story" / run / "model.pdmodel").is_file()
        info = yaml.safe_load((work / "output" / run / "slim_info.yml").read_text())
        assert info["student_weights"] == str(work / "base.pdparams") and info["seed"] == int(run[-1])


def test_distill_loss_specs_parse_names_and_arguments():
    from ppdet_lite.core.errors import ConfigError
    from ppdet_lite.slim.tools.prune_distill import distill_specs, parse_args, safe_name

    slim = {"distill_loss": "DistillYOLOv3Loss"}
    assert distill_specs(parse_args([]), slim) == [("DistillYOLOv3Loss", "DistillYOLOv3Loss", {})]
    args = parse_args(["--distill_loss", "DistillYOLOv3Loss:obj_weighted=false,weight=300",
                       "NeckFeatureDistillLoss"])
    assert distill_specs(args, slim) == [
        ("DistillYOLOv3Loss:obj_weighted=false,weight=300", "DistillYOLOv3Loss",
         {"obj_weighted": False, "weight": 300}),
        ("NeckFeatureDistillLoss", "NeckFeatureDistillLoss", {})]
    assert safe_name("DistillYOLOv3Loss:obj_weighted=false") == "DistillYOLOv3Loss_obj_weightedfalse"
    with pytest.raises(ConfigError, match="key=value"):
        distill_specs(parse_args(["--distill_loss", "DistillYOLOv3Loss:weight"]), slim)


@pytest.mark.slow  # a QAT fine-tune and a PTQ calibration, each evaluated through Paddle Inference
def test_quant_and_post_quant_scripts_write_int8_models(work):
    """slim/post_quant.py and slim/quant.py on the demo slim configs: int8 programs Paddle
    Inference runs, and the comparison table."""
    base = str(work / "base.pdparams")
    ptq = os.path.join(ROOT, "configs", "slim", "post_quant", "ppyolo_tiny_shapes_ptq.yml")
    out = tool("post_quant", "-c", DEMO, "--slim_config", ptq, "--output_dir", str(work / "ptq"),
               *opts(work), "weights=" + base, cwd=work, folder="slim")
    assert re.search(r"\nFP32 +\d\.\d{3}", out) and re.search(r"\nPTQ INT8 +\d\.\d{3}", out), out[-3000:]
    out = tool("quant", "-c", DEMO, "--slim_config", QAT_CFG, "--output_dir", str(work / "qat"),
               *opts(work, pretrain_weights=base), cwd=work, folder="slim")
    assert re.search(r"QAT INT8 \(Inference\) +\d\.\d{3}", out), out[-3000:]
    for model_dir in (work / "ptq" / "ppyolo_tiny_shapes_ptq", work / "qat" / "ppyolo_tiny_shapes_qat"):
        ops = program_ops(str(model_dir / "model.pdmodel"))
        assert ops & {"quantize_linear", "dequantize_linear"}, sorted(ops)
        bbox, _ = run_inference(inference_predictor(str(model_dir)), random_inputs([3, SIZE, SIZE]))[:2]
        assert bbox.shape[1] == 6


@pytest.mark.parametrize("script, slim_config, message", [
    ("quant", "post_quant/ppyolo_tiny_shapes_ptq.yml", "slim: PTQ; this tool runs QAT"),
    ("post_quant", "quant/ppyolo_tiny_shapes_qat.yml", "slim: QAT; this tool runs PTQ"),
    ("prune_distill", "quant/ppyolo_tiny_shapes_qat.yml", "slim: QAT belongs to slim/quant.py"),
])
def test_slim_scripts_refuse_the_wrong_slim_config_in_one_line(tmp_path, script, slim_config, message):
    """slim/*.py given another tool's slim config: exit 2 and one line naming the file and the tool."""
    slim = os.path.join(ROOT, "configs", "slim", slim_config)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "slim", f"{script}.py"), "-c", DEMO,
                           "--slim_config", slim], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [f"error: {slim}: {message}"], proc.stderr[-2000:]


def test_without_a_teacher_the_student_needs_weights_of_its_own(work):
    """--no_distill skips the teacher: the unpruned student comes from --student_weights or -c's
    trained weights, and nothing else will do."""
    from types import SimpleNamespace

    from ppdet_lite.core.errors import ConfigError
    from ppdet_lite.slim.tools.prune_distill import student_start

    slim = os.path.join(ROOT, "configs", "slim", "distill", "ppyolo_tiny_shapes_distill_prune.yml")
    cfg, _ = load_slim_config(DEMO, slim, {"weights": str(work / "nowhere")})
    args = SimpleNamespace(student_weights=None, config=DEMO)
    with pytest.raises(ConfigError, match="no_distill"):
        student_start(args, cfg, ppdet_lite.build_model(cfg), None, None)
    student = ppdet_lite.build_model(cfg)
    args.student_weights = str(work / "base.pdparams")
    assert student_start(args, cfg, student, None, None) == args.student_weights
    want = paddle.load(args.student_weights)["yolo_head.yolo_output.0.weight"].numpy()
    np.testing.assert_array_equal(student.state_dict()["yolo_head.yolo_output.0.weight"].numpy(), want)
    cfg["weights"] = args.student_weights  # -c's trained weights
    args.student_weights = None
    assert student_start(args, cfg, ppdet_lite.build_model(cfg), None, None) == cfg["weights"]

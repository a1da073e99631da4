"""Prune a PP-YOLO model, fine-tune it plain and with distillation from a teacher, compare them.

    python slim/prune_distill.py                     # the shapes demo (~15 min CPU once trained)
    python slim/prune_distill.py --seeds 0 1 2 --distill_loss DistillYOLOv3Loss \
        DistillYOLOv3Loss:obj_weighted=false NeckFeatureDistillLoss   # every variant, three seeds
    python slim/prune_distill.py -c configs/ppyolo_mbv3_small.yml \
        --slim_config configs/slim/distill/ppyolo_mbv3_small_distill_prune.yml --target 0 \
        --student_weights https://paddledet.bj.bcebos.com/models/ppyolo_mbv3_small_coco.pdparams
    python slim/prune_distill.py --list_layers       # the layer names Pruner accepts

Run it from the repository root (configs, dataset/ and output/ paths are relative to it).

Steps: (1) the teacher: the slim config's pretrain_weights, trained with the slim config's _BASE_
first when they are that config's own missing best_model; the baseline (the unpruned student):
--student_weights, else the teacher's weights when the models match, else -c's weights (trained
first when they are -c's own missing best_model); (2) prune a copy of the baseline: with --target
> 0 a sensitivity scan (one layer and ratio at a time, mAP on EvalDataset) over the Pruner's
layers proposes ratios reaching that FLOPs cut, with --target 0 the config's pruned_ratios are
used; (3) for each of --seeds, fine-tune the pruned model from the same start on its task loss
("pruned+tuned") and, for each --distill_loss, on task loss + distillation from the frozen teacher
("pruned+distilled"); (4) evaluate, export to Paddle Inference, post-training quantize the best
fine-tune (the config's ``PTQ`` section, else ``PTQ``'s defaults; ``--no_ptq`` skips it) and print
one table: mAP, FLOPs, parameters, file size and CPU latency of every model, then per variant the
mean over seeds and how much of the mAP pruning cost it won back. A ``slim: Pruner`` config skips
the distilled runs; ``slim: Distill`` skips pruning.
"""
import argparse
import copy
import os

from ...core.config import Config, base_paths, load_config, parse_value
from ...core.errors import ConfigError
from ...modeling import build_model
from ...utils.cli import ArgumentParser, fraction, positive_int, ratio, run

# the demo configs of the source checkout holding this package
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
DEMO_CONFIG = os.path.relpath(os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml"))
DEMO_SLIM = os.path.relpath(os.path.join(ROOT, "configs", "slim", "distill", "ppyolo_tiny_shapes_distill_prune.yml"))


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", default=DEMO_CONFIG, help="the student's model config")
    p.add_argument("--slim_config", default=DEMO_SLIM, help="slim: DistillPrune | Pruner | Distill")
    p.add_argument("--teacher_weights", help="baseline/teacher weights (default: the slim config's "
                                             "pretrain_weights)")
    p.add_argument("--student_weights", help="weights the student starts from (default: the "
                                             "teacher's when the models match)")
    p.add_argument("--target", type=fraction, default=0.,
                   help="FLOPs fraction to remove, ratios from a sensitivity scan; 0 (default): the "
                        "config's pruned_ratios")
    p.add_argument("--sensitivity_ratios", type=ratio, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--epochs", type=positive_int, help="fine-tune epochs (default: the slim config's epoch)")
    p.add_argument("--no_plain", action="store_true",
                   help="skip the plain (task loss only) fine-tune of the pruned model")
    p.add_argument("--no_distill", action="store_true",
                   help="skip the distilled fine-tunes (and the teacher, when the student has weights of its own)")
    p.add_argument("--no_ptq", action="store_true",
                   help="skip the post-training int8 quantization of the best fine-tune")
    p.add_argument("--seeds", type=int, nargs="+",
                   help="one plain and one distilled fine-tune per seed (default: the config's seed)")
    p.add_argument("--distill_loss", nargs="+", metavar="LOSS[:key=value,...]",
                   help="one distilled fine-tune per loss, e.g. DistillYOLOv3Loss:weight=300 "
                        "NeckFeatureDistillLoss (default: the slim config's distill_loss)")
    p.add_argument("--output_dir", default="output_inference", help="exported models go here")
    p.add_argument("--cpu_threads", type=positive_int, default=1, help="Paddle Inference threads for latency")
    p.add_argument("--enable_mkldnn", action="store_true", help="oneDNN for the latency runs")
    p.add_argument("--list_layers", action="store_true", help="print prunable layer names and exit")
    p.add_argument("-o", "--opt", nargs="*", default=[], help="overrides for the student config")
    return p.parse_args(argv)


def exists(weights: str) -> bool:
    from ...engine.checkpoint import strip_suffix

    return "://" in weights or os.path.isfile(strip_suffix(weights) + ".pdparams")


def trained(config: str, weights: str, what: str) -> str:
    """``weights``, trained first with ``config`` when they are its own best_model and missing."""
    from ...engine.checkpoint import strip_suffix
    from ...engine.trainer import Trainer

    if exists(weights):
        return weights
    base = load_config(config)
    own = os.path.join(base.get("save_dir", "output"), base["filename"], "best_model")
    if os.path.abspath(strip_suffix(weights)) != os.path.abspath(own):
        raise ConfigError(f"{what} weights {weights} not found; train them first "
                          f"(python tools/train.py -c {config} --eval)")
    print(f"== no {own}.pdparams yet: training the {what} (tools/train.py -c {config} --eval)")
    Trainer(base, mode="train", seed=base.get("seed", 0)).train(validate=True)
    return own


def teacher_config(args) -> str:
    """The config the slim file inherits (its ``_BASE_``): the teacher's, which trains it."""
    bases = base_paths(args.slim_config)
    if len(bases) != 1:
        raise ConfigError(f"{args.slim_config}: _BASE_ should name the teacher's config (one file), "
                          f"got {bases}")
    return bases[0]


def baseline_weights(args, cfg, slim_cfg) -> str:
    """The teacher's weights (a Pruner config's: the model to prune), trained when missing."""
    from .. import teacher_weights

    if cfg["slim"] == "Pruner":
        weights = args.teacher_weights or cfg.get("pretrain_weights") or cfg.get("weights")
        if not weights:
            raise ConfigError(f"{args.slim_config}: set pretrain_weights (the trained model)")
        return trained(args.config, weights, "baseline")
    weights = args.teacher_weights or teacher_weights(slim_cfg)
    return weights if exists(weights) else trained(teacher_config(args), weights, "teacher")


def student_start(args, cfg, student, teacher, teacher_weights) -> str:
    """Load the unpruned student's weights into ``student``: --student_weights, the teacher's when
    the models match, for DistillPrune -c's trained weights, else -c's pretrain_weights (partly).
    Returns where trained weights came from, '' when there were none (only pretrain_weights)."""
    from ...engine.checkpoint import load_weights, strip_suffix
    from .. import same_shapes

    if args.student_weights:
        load_weights(student, args.student_weights)
        return args.student_weights
    if teacher is not None and cfg["slim"] != "Distill" and same_shapes(student, teacher):
        student.set_state_dict(teacher.state_dict())
        return teacher_weights
    own = load_config(args.config)
    own = os.path.join(own.get("save_dir", "output"), own["filename"], "best_model")
    weights = (cfg.get("weights") or "") if cfg["slim"] == "DistillPrune" else ""
    if weights and (exists(weights) or os.path.abspath(strip_suffix(weights)) == os.path.abspath(own)):
        weights = trained(args.config, weights, "baseline")
        load_weights(student, weights)
        return weights
    if teacher is None:
        raise ConfigError("--no_distill without a teacher: the student needs trained weights of its own "
                          "(--student_weights, or -c's weights)")
    if cfg.get("pretrain_weights"):
        load_weights(student, cfg["pretrain_weights"], partial=True)
    return ""


def distill_specs(args, slim_cfg):
    """[(label, loss name, changes)] from --distill_loss (``Name:key=value,...``)."""
    specs = []
    for text in args.distill_loss or [slim_cfg.get("distill_loss") or "DistillYOLOv3Loss"]:
        name, _, rest = text.partition(":")
        changes = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise ConfigError(f"--distill_loss {text}: write Name:key=value,key=value")
            changes[key.strip()] = parse_value(value.strip())
        specs.append((text, name, changes))
    return specs


def _with(cfg, **changes):
    """A copy of ``cfg`` (a Config) with top-level keys changed."""
    out = Config(copy.deepcopy(dict(cfg)))
    out.update(changes)
    return out


def evaluator(cfg):
    """``evaluate(model, quiet=False) -> metrics`` on cfg's EvalDataset."""
    import logging

    from ...engine.trainer import Trainer

    ev = Trainer(_with(cfg, filename=cfg["filename"] + "_eval"), mode="eval")
    log = logging.getLogger("ppdet_lite")

    def evaluate(model, quiet=False):
        ev.model, level = model, log.level
        if quiet:
            log.setLevel(logging.WARNING)
        try:
            return ev.evaluate()
        finally:
            log.setLevel(level)
    return evaluate


def prune_student(args, cfg, slim_cfg, model, evaluate, shape):
    """Prune ``model`` in place (ratios from a sensitivity scan with --target); returns the ratios."""
    from ...core.registry import create
    from .. import prune as P

    section = (cfg if cfg["slim"] == "Pruner" else slim_cfg).get("Pruner")
    if not section:
        raise ConfigError(f"{args.slim_config}: needs a Pruner section")
    pruner_cfg = create("Pruner", section, where=f"{args.slim_config}: Pruner")
    names = [P.resolve_layer(model, n) for n in pruner_cfg.pruned_params]
    flops0, params0 = P.count_flops(model, shape), P.count_params(model)
    slim_pruner = P.make_pruner(model, pruner_cfg.criterion, shape)
    if args.target > 0:
        print(f"== sensitivity of {len(names)} layers at ratios {args.sensitivity_ratios}")
        table = P.sensitivity(model, slim_pruner, names, lambda m: evaluate(m, quiet=True)["AP"],
                              args.sensitivity_ratios, shape)
        print(P.format_sensitivity(table))

        def measured_cut(ratios):
            plan = P.apply_ratios(model, slim_pruner, ratios)
            cut = 1 - P.count_flops(model, shape) / flops0
            plan.restore(model)
            return cut
        ratios, cut = P.propose_ratios(table, args.target, measured_cut)
        print(f"== proposed ratios for -{args.target:.0%} FLOPs (measured -{cut:.1%}):")
        for k, r in ratios.items():
            print(f"   {k}: {r:.2f}")
    else:
        ratios = dict(zip(names, pruner_cfg.pruned_ratios))
    P.apply_ratios(model, slim_pruner, ratios)
    flops1, params1 = P.count_flops(model, shape), P.count_params(model)
    print(f"== pruned: FLOPs {flops0 / 1e6:.1f}M -> {flops1 / 1e6:.1f}M (-{1 - flops1 / flops0:.1%}), "
          f"params {params0 / 1e6:.3f}M -> {params1 / 1e6:.3f}M, mAP before fine-tuning "
          f"{evaluate(model, quiet=True)['AP']:.4f}")
    return ratios


def finetune(cfg, name, state, epochs, seed, teacher=None, loss=None, info=None):
    """Fine-tune a model of ``state``'s (pruned) shapes with ``seed``; with ``teacher``, distil
    from it through ``loss`` = (slim config, loss name, changes). Returns the model holding the
    final (EMA) weights."""
    import paddle
    import yaml

    from ...engine.trainer import Trainer
    from ...engine.checkpoint import read_state
    from .. import build_distill_loss, distill_wrapper, load_pruned_weights

    run_cfg = _with(cfg, filename=name, seed=seed, **({"epoch": epochs} if epochs else {}))
    model = load_pruned_weights(build_model(cfg), state)
    wrapper = None
    if teacher is not None:
        paddle.seed(seed)  # a feature adapter starts from the seed too
        slim_cfg, loss_name, changes = loss
        wrapper = distill_wrapper(teacher, build_distill_loss(slim_cfg, loss_name, changes, teacher, model))
    trainer = Trainer(run_cfg, mode="train", seed=seed, model=model, train_wrapper=wrapper)
    trainer.train(validate=True)
    final = os.path.join(trainer.save_dir, "model_final.pdparams")
    load_pruned_weights(trainer.model, read_state(final))  # the (EMA) weights, as exported
    with open(os.path.join(trainer.save_dir, "slim_info.yml"), "w") as f:
        f.write("# pruned weights: load with ppdet_lite.slim.load_pruned_weights(model, "
                "paddle.load('model_final.pdparams'))\n")
        yaml.safe_dump(dict(info or {}, seed=seed), f, sort_keys=False)
    return trainer.model


def measure(cfg, name, model, shape, args):
    """Export ``model`` (deployable, and without post-processing for timing); FLOPs, params, size."""
    from ...export.jit import export_model
    from .. import count_flops, count_params
    from ..quant import model_size

    full = export_model(_with(cfg, filename=name), args.output_dir, model=copy.deepcopy(model))
    net = export_model(_with(cfg, filename=name + "_benchmark", export=dict(cfg.get("export") or {},
                                                                            benchmark=True)),
                       args.output_dir, model=copy.deepcopy(model))
    return {"flops": count_flops(model, shape), "params": count_params(model),
            "bytes": model_size(full), "dirs": (net, full)}


def post_quantize(cfg, rows):
    """A row for the best fine-tuned model (by mAP) after PTQ (``cfg['PTQ']``) of both its exports,
    calibrated on TrainDataset; None when no row was fine-tuned."""
    from ...core.registry import create
    from ..quant import calibration_batches, evaluate_inference_model, model_size

    tuned = [r for r in rows if r[0] not in ("teacher", "baseline", "pruned (no tune)")]
    if not tuned:
        return None
    name, metrics, m = max(tuned, key=lambda r: r[1].get("AP", float("-inf")))
    ptq = create("PTQ", cfg.get("PTQ") or {}, where=f"{cfg['filename']}: PTQ")
    print(f"== post-training quantization of the best fine-tune ({name}, mAP {metrics['AP']:.3f})")
    batches = calibration_batches(cfg, ptq.quant_batch_num, "TrainDataset")
    net, full = (ptq.quantize(d, d + "_ptq", batches) for d in m["dirs"])
    return (f"PTQ int8 of {name}", evaluate_inference_model(full, cfg),
            dict(m, bytes=model_size(full), dirs=(net, full)))


def time_models(rows, sample, args) -> None:
    """Fill ``net_ms`` / ``e2e_ms`` of every row, all models timed in turns."""
    from ..quant import inference_latency

    dirs = [d for _, _, m in rows for d in m["dirs"]]
    ms = inference_latency(dirs, sample, args.cpu_threads, args.enable_mkldnn)
    for i, (_, _, m) in enumerate(rows):
        m["net_ms"], m["e2e_ms"] = ms[2 * i], ms[2 * i + 1]


def print_table(rows, shape, args) -> None:
    width = max(18, *(len(name) for name, _, _ in rows))
    head = (f"{'model':<{width}} {'mAP':>6} {'AP50':>6} {'MFLOPs':>7} {'params(M)':>9} {'size(MiB)':>9} "
            f"{'net(ms)':>7} {'+NMS(ms)':>8}")
    print("\n" + head + "\n" + "-" * len(head))
    base = next(m for name, _, m in rows if name == "baseline")
    for name, metrics, m in rows:
        print(f"{name:<{width}} {metrics.get('AP', float('nan')):6.3f} {metrics.get('AP50', float('nan')):6.3f} "
              f"{m['flops'] / 1e6:7.1f} {m['params'] / 1e6:9.3f} {m['bytes'] / 2**20:9.2f} "
              f"{m['net_ms']:7.2f} {m['e2e_ms']:8.2f}"
              + ("" if m is base else f"  FLOPs {m['flops'] / base['flops'] - 1:+.0%}, "
                                      f"net x{base['net_ms'] / m['net_ms']:.2f}"))
    print(f"\nmAP: COCO bbox mAP@[.5:.95] on EvalDataset. MFLOPs: PaddleSlim count at {shape[1]}x"
          f"{shape[2]}, batch 1. size: model.pdmodel + model.pdiparams. Latency: Paddle Inference on "
          f"CPU, batch 1, one EvalDataset image, {args.cpu_threads} thread(s), oneDNN "
          f"{'on' if args.enable_mkldnn else 'off'}, median of 100 runs after 20 warm-up, models timed "
          f"in turns; net(ms): "
          f"exported without decode and NMS (as the model zoo times FPS), +NMS(ms): the deployable "
          f"model. PTQ int8 rows: the fake-quantized program (int8 weights, quantize/dequantize ops "
          f"run in float; oneDNN's int8 kernels and Lite's .nb run it as int8). Models in "
          f"{args.output_dir}/")


def main(argv=None) -> None:
    args = parse_args(argv)
    import paddle

    from .. import fixed_input_shape, load_slim_config, make_pruner, prunable_layers, teacher_from
    from ..quant import calibration_batches

    paddle.set_device("cpu")
    cfg, slim_cfg = load_slim_config(args.config, args.slim_config, args.opt)
    mode = cfg["slim"]
    if mode not in ("Pruner", "Distill", "DistillPrune"):
        raise ConfigError(f"{args.slim_config}: slim: {mode} belongs to "
                          f"{'slim/quant.py' if mode == 'QAT' else 'slim/post_quant.py'}")
    shape = fixed_input_shape(cfg)
    student = build_model(cfg)
    if args.list_layers:
        print("\n".join(prunable_layers(student, make_pruner(student, "l1_norm", shape))))
        return
    specs = distill_specs(args, slim_cfg) if mode != "Pruner" and not args.no_distill else []
    seeds = args.seeds or [int(cfg.get("seed", 0))]

    weights = teacher = None
    if mode == "Pruner" or specs:  # the model to prune, or the teacher
        weights = baseline_weights(args, cfg, slim_cfg)
        teacher = teacher_from(cfg if mode == "Pruner" else slim_cfg, weights)
    evaluate = evaluator(cfg)
    sample = calibration_batches(cfg, 1, "EvalDataset", batch_size=1)[0]
    start = student_start(args, cfg, student, teacher, weights)
    rows = []
    if teacher is not None and start and start != weights:  # a teacher of its own: a row of its own
        print("== teacher")
        rows.append(("teacher", evaluate(teacher), measure(cfg, f"{cfg['filename']}_teacher", teacher, shape, args)))
    print("== baseline")
    baseline = student if start else teacher
    rows.append(("baseline", evaluate(baseline), measure(cfg, f"{cfg['filename']}_baseline", baseline, shape, args)))

    info = {"slim": mode, "teacher_weights": weights if mode != "Pruner" else None,
            "student_weights": start or None}
    if mode != "Distill":
        info["pruned_ratios"] = {k: float(v) for k, v in
                                 prune_student(args, cfg, slim_cfg, student, evaluate, shape).items()}
    state = {k: v.numpy() for k, v in student.state_dict().items()}
    if mode != "Distill":
        rows.append(("pruned (no tune)", evaluate(student),
                     measure(cfg, f"{cfg['filename']}_pruned", student, shape, args)))

    runs = []  # (variant, run name, teacher, loss)
    if mode == "Distill" or not args.no_plain:
        runs.append(("student" if mode == "Distill" else "pruned+tuned", f"{cfg['filename']}_plain", None, None))
    for label, name, changes in specs:
        variant = "distilled" if mode == "Distill" else "pruned+distilled"
        own = label == (slim_cfg.get("distill_loss") or "DistillYOLOv3Loss")
        runs.append((variant if own else f"{variant} [{label}]",
                     cfg["filename"] if own else f"{cfg['filename']}_{safe_name(label)}",
                     teacher, (slim_cfg, name, changes)))
    for seed in seeds:
        for variant, run_name, run_teacher, loss in runs:
            tag = f" seed {seed}" if args.seeds else ""  # named by seed when seeds were asked for
            run_name += f"_seed{seed}" if args.seeds else ""
            print(f"== fine-tune ({variant}{tag}: "
                  f"{'task loss only' if run_teacher is None else 'task loss + distillation'})")
            model = finetune(cfg, run_name, state, args.epochs, seed, run_teacher, loss, info)
            rows.append((variant + tag, evaluate(model), measure(cfg, run_name, model, shape, args)))
    quantized = None if args.no_ptq else post_quantize(cfg, rows)
    if quantized:
        rows.append(quantized)
    time_models(rows, sample, args)
    print_table(rows, shape, args)
    print_summary(rows, [variant for variant, _, _, _ in runs], seeds if args.seeds else [], mode != "Distill")


def safe_name(text: str) -> str:
    """A loss spec as part of a directory name: ``DistillYOLOv3Loss:weight=300`` → ``..._weight300``."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text.replace("=", ""))


def print_summary(rows, variants, seeds, pruned: bool) -> None:
    """Per fine-tune variant: the mean mAP over ``seeds`` (rows named '<variant> seed N'; none:
    one unnamed run) and, after pruning, how much of the mAP that pruning removed it won back
    (against the untuned pruned model)."""
    import numpy as np

    ap = {name: metrics.get("AP", float("nan")) for name, metrics, _ in rows}
    tag = (lambda s: f" seed {s}") if seeds else (lambda s: "")
    means = {v: float(np.mean([ap[v + tag(s)] for s in seeds or [None]])) for v in variants}
    if len(seeds) > 1:
        print(f"\nmean over seeds {seeds}:")
        for v in variants:
            per = " / ".join(f"{ap[v + tag(s)]:.3f}" for s in seeds)
            print(f"  {v}: {means[v]:.3f} (seeds: {per})")
    if not pruned:
        return
    base, untuned = ap["baseline"], ap["pruned (no tune)"]
    lost = base - untuned
    print(f"\npruning cost {lost:+.3f} mAP before fine-tuning ({base:.3f} -> {untuned:.3f})")
    plain = means.get("pruned+tuned")
    for v in variants:
        line = f"{v}: {means[v]:.3f}"
        if lost > 0:
            line += f", recovers {(means[v] - untuned) / lost:.0%} of it"
        if plain is not None and v != "pruned+tuned":
            line += f", {means[v] - plain:+.3f} over the plain fine-tune"
        print(line)


def cli() -> None:
    run(main)

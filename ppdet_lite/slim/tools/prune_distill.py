"""Prune a PP-YOLO model, fine-tune it with distillation from the unpruned one, compare all three.

    python slim/prune_distill.py                     # the shapes demo, end to end (~15-30 min CPU)
    python slim/prune_distill.py -c configs/ppyolo_mbv3_small.yml \\
        --slim_config configs/slim/distill/ppyolo_mbv3_small_distill_prune.yml --target 0 \\
        --student_weights https://paddledet.bj.bcebos.com/models/ppyolo_mbv3_small_coco.pdparams
    python slim/prune_distill.py --list_layers       # the layer names Pruner accepts

Run it from the repository root (configs, dataset/ and output/ paths are relative to it).

Steps: (1) the baseline/teacher: the slim config's pretrain_weights, trained with -c first when they
are the -c config's own best_model and missing; (2) prune a copy: with --target > 0 a sensitivity
scan (one layer and ratio at a time, mAP on EvalDataset) over the Pruner's layers proposes ratios
reaching that FLOPs cut, with --target 0 the config's pruned_ratios are used; (3) fine-tune the
pruned model twice from the same start: on its task loss ("pruned+tuned") and with DistillYOLOv3Loss
from the frozen baseline ("pruned+distilled"); (4) evaluate, export to Paddle Inference and print
one table: mAP, FLOPs, parameters, file size and CPU latency for the baseline, the pruned model
before fine-tuning and both fine-tunes, then how much of the mAP pruning cost each fine-tune won
back. A ``slim: Pruner`` config skips the distilled run; ``slim: Distill`` skips pruning.
"""
import argparse
import copy
import os

from ...core.config import Config, load_config
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
    p.add_argument("--target", type=fraction, default=0.45,
                   help="FLOPs fraction to remove, ratios from a sensitivity scan; 0: the config's ratios")
    p.add_argument("--sensitivity_ratios", type=ratio, nargs="+", default=[0.25, 0.5, 0.75])
    p.add_argument("--epochs", type=positive_int, help="fine-tune epochs (default: the slim config's epoch)")
    p.add_argument("--no_plain", action="store_true",
                   help="skip the plain (task loss only) fine-tune of the pruned model")
    p.add_argument("--output_dir", default="output_inference", help="exported models go here")
    p.add_argument("--cpu_threads", type=positive_int, default=1, help="Paddle Inference threads for latency")
    p.add_argument("--enable_mkldnn", action="store_true", help="oneDNN for the latency runs")
    p.add_argument("--list_layers", action="store_true", help="print prunable layer names and exit")
    p.add_argument("-o", "--opt", nargs="*", default=[], help="overrides for the student config")
    return p.parse_args(argv)


def baseline_weights(args, cfg, slim_cfg) -> str:
    """The teacher's weights; trains them with -c when they are -c's own missing best_model."""
    from ...engine.checkpoint import strip_suffix
    from ...engine.trainer import Trainer
    from .. import teacher_weights

    mode = cfg["slim"]
    weights = args.teacher_weights or (teacher_weights(slim_cfg) if mode != "Pruner"
                                       else cfg.get("pretrain_weights") or cfg.get("weights"))
    if not weights:
        raise ConfigError(f"{args.slim_config}: set pretrain_weights (the trained model)")
    if "://" in weights or os.path.isfile(strip_suffix(weights) + ".pdparams"):
        return weights
    base = load_config(args.config)
    own = os.path.join(base.get("save_dir", "output"), base["filename"], "best_model")
    if os.path.abspath(strip_suffix(weights)) != os.path.abspath(own):
        raise ConfigError(f"baseline weights {weights} not found; train them first "
                          f"(python tools/train.py -c {args.config} --eval)")
    print(f"== no {own}.pdparams yet: training the baseline (tools/train.py -c {args.config} --eval)")
    trainer = Trainer(base, mode="train", seed=base.get("seed", 0))
    trainer.train(validate=True)
    return own


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


def finetune(cfg, name, state, epochs, teacher=None, slim_cfg=None, info=None):
    """Fine-tune a model of ``state``'s (pruned) shapes; with ``teacher``, distil from it.
    Returns the model holding the final (EMA) weights."""
    import yaml

    from ...engine.trainer import Trainer
    from ...engine.checkpoint import read_state
    from .. import build_distill_loss, distill_wrapper, load_pruned_weights

    run_cfg = _with(cfg, filename=name, **({"epoch": epochs} if epochs else {}))
    model = load_pruned_weights(build_model(cfg), state)
    wrapper = distill_wrapper(teacher, build_distill_loss(slim_cfg)) if teacher is not None else None
    trainer = Trainer(run_cfg, mode="train", seed=run_cfg.get("seed", 0), model=model, train_wrapper=wrapper)
    trainer.train(validate=True)
    final = os.path.join(trainer.save_dir, "model_final.pdparams")
    load_pruned_weights(trainer.model, read_state(final))  # the (EMA) weights, as exported
    with open(os.path.join(trainer.save_dir, "slim_info.yml"), "w") as f:
        f.write("# pruned weights: load with ppdet_lite.slim.load_pruned_weights(model, "
                "paddle.load('model_final.pdparams'))\n")
        yaml.safe_dump(info or {}, f, sort_keys=False)
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


def time_models(rows, sample, args) -> None:
    """Fill ``net_ms`` / ``e2e_ms`` of every row, all models timed in turns."""
    from ..quant import inference_latency

    dirs = [d for _, _, m in rows for d in m["dirs"]]
    ms = inference_latency(dirs, sample, args.cpu_threads, args.enable_mkldnn)
    for i, (_, _, m) in enumerate(rows):
        m["net_ms"], m["e2e_ms"] = ms[2 * i], ms[2 * i + 1]


def print_table(rows, shape, args) -> None:
    head = (f"{'model':<18} {'mAP':>6} {'AP50':>6} {'MFLOPs':>7} {'params(M)':>9} {'size(MiB)':>9} "
            f"{'net(ms)':>7} {'+NMS(ms)':>8}")
    print("\n" + head + "\n" + "-" * len(head))
    base = rows[0][2]
    for name, metrics, m in rows:
        print(f"{name:<18} {metrics.get('AP', float('nan')):6.3f} {metrics.get('AP50', float('nan')):6.3f} "
              f"{m['flops'] / 1e6:7.1f} {m['params'] / 1e6:9.3f} {m['bytes'] / 2**20:9.2f} "
              f"{m['net_ms']:7.2f} {m['e2e_ms']:8.2f}"
              + ("" if m is base else f"  FLOPs -{1 - m['flops'] / base['flops']:.0%}, "
                                      f"net x{base['net_ms'] / m['net_ms']:.2f}"))
    print(f"\nmAP: COCO bbox mAP@[.5:.95] on EvalDataset. MFLOPs: PaddleSlim count at {shape[1]}x"
          f"{shape[2]}, batch 1. size: model.pdmodel + model.pdiparams. Latency: Paddle Inference on "
          f"CPU, batch 1, one EvalDataset image, {args.cpu_threads} thread(s), oneDNN "
          f"{'on' if args.enable_mkldnn else 'off'}, median of 100 runs after 20 warm-up, models timed "
          f"in turns; net(ms): "
          f"exported without decode and NMS (as the model zoo times FPS), +NMS(ms): the deployable "
          f"model. Models in {args.output_dir}/")


def main(argv=None) -> None:
    args = parse_args(argv)
    import paddle

    from ...engine.checkpoint import load_weights
    from .. import (fixed_input_shape, load_slim_config, make_pruner, prunable_layers, same_shapes,
                    teacher_from)
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

    weights = baseline_weights(args, cfg, slim_cfg)
    teacher_cfg = cfg if mode == "Pruner" else slim_cfg
    teacher = teacher_from(teacher_cfg, weights)
    evaluate = evaluator(cfg)
    sample = calibration_batches(cfg, 1, "EvalDataset", batch_size=1)[0]
    print("== baseline")
    rows = [("baseline", evaluate(teacher),
             measure(cfg, f"{cfg['filename']}_baseline", teacher, shape, args))]

    if args.student_weights:
        load_weights(student, args.student_weights)
    elif mode != "Distill" and same_shapes(student, teacher):
        student.set_state_dict(teacher.state_dict())
    elif cfg.get("pretrain_weights"):
        load_weights(student, cfg["pretrain_weights"], partial=True)
    info = {"slim": mode, "teacher_weights": weights if mode != "Pruner" else None}
    if mode != "Distill":
        info["pruned_ratios"] = {k: float(v) for k, v in
                                 prune_student(args, cfg, slim_cfg, student, evaluate, shape).items()}
    state = {k: v.numpy() for k, v in student.state_dict().items()}

    if mode != "Distill":
        rows.append(("pruned (no tune)", evaluate(student),
                     measure(cfg, f"{cfg['filename']}_pruned", student, shape, args)))
    if mode == "Distill" or not args.no_plain:
        name = "student" if mode == "Distill" else "pruned+tuned"
        print(f"== fine-tune ({name}, task loss only)")
        model = finetune(cfg, f"{cfg['filename']}_plain", state, args.epochs, info=info)
        rows.append((name, evaluate(model), measure(cfg, f"{cfg['filename']}_plain", model, shape, args)))
    if mode != "Pruner":
        name = "distilled" if mode == "Distill" else "pruned+distilled"
        print(f"== fine-tune ({name}: task loss + distillation from the baseline)")
        model = finetune(cfg, cfg["filename"], state, args.epochs, teacher, slim_cfg, info)
        rows.append((name, evaluate(model), measure(cfg, cfg["filename"], model, shape, args)))
    time_models(rows, sample, args)
    print_table(rows, shape, args)
    if mode != "Distill":
        print_recovery({name: metrics.get("AP", float("nan")) for name, metrics, _ in rows})


def print_recovery(ap: dict) -> None:
    """How much of the mAP that pruning removed each fine-tune won back, against the untuned
    pruned model and (for distillation) against the plain fine-tune."""
    base, untuned = ap["baseline"], ap["pruned (no tune)"]
    lost = base - untuned
    print(f"\npruning cost {lost:+.3f} mAP before fine-tuning ({base:.3f} -> {untuned:.3f})")
    for name in ("pruned+tuned", "pruned+distilled"):
        if name in ap and lost > 0:
            print(f"{name}: {ap[name]:.3f}, recovers {(ap[name] - untuned) / lost:.0%} of it")
    if "pruned+tuned" in ap and "pruned+distilled" in ap:
        gap = base - ap["pruned+tuned"]
        gain = ap["pruned+distilled"] - ap["pruned+tuned"]
        share = f", {gain / gap:.0%} of the {gap:.3f} the plain fine-tune left" if gap > 0 else ""
        print(f"distillation over the plain fine-tune: {gain:+.3f} mAP{share}")


def cli() -> None:
    run(main)

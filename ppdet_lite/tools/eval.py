"""Evaluate weights on EvalDataset: python tools/eval.py -c CONFIG -o weights=output/NAME/best_model"""
from ..core.errors import ConfigError, writable_dir
from ..utils.cli import ArgsParser, load_configs, run, score_threshold


def main(argv=None) -> None:
    parser = ArgsParser(description=__doc__, slim=True)
    parser.add_argument("--output_eval", default=None, help="directory for bbox.json (default: save_dir/<config>)")
    parser.add_argument("--classwise", action="store_true", help="print AP per class")
    parser.add_argument("--bias", action="store_true", help="add 1 to box w/h (weights from before the dygraph era)")
    parser.add_argument("--map_type", choices=["11point", "integral"], default=None, help="VOC mAP type")
    parser.add_argument("--confusion_score_thresh", type=score_threshold, default=0.25,
                        help="score threshold for the --classwise confusion matrix")
    args = parser.parse_args(argv)

    cfg, slim_cfg = load_configs(args)
    if args.output_eval:
        writable_dir(args.output_eval, "--output_eval")
    cfg.update(output_eval=args.output_eval, classwise=args.classwise, bias=1.0 if args.bias else 0.0,
               confusion_score_thresh=args.confusion_score_thresh)
    if args.map_type:
        cfg["map_type"] = args.map_type
    from ..engine.trainer import Trainer

    if not cfg.get("weights"):
        raise ConfigError(f"{args.config}: no weights to evaluate; pass -o weights=<path to .pdparams>")
    if slim_cfg is None:
        trainer = Trainer(cfg, mode="eval")
        from ..engine.checkpoint import load_weights

        load_weights(trainer.model, cfg["weights"])
    else:
        from ..slim import build_slim_model

        trainer = Trainer(cfg, mode="eval", model=build_slim_model(cfg, slim_cfg, "eval").model)
    metrics = trainer.evaluate()
    name = "VOC mAP" if cfg.get("metric") == "VOC" else "bbox mAP@[.5:.95]"
    print(f"{name} {metrics['AP']:.4f}  AP50 {metrics['AP50']:.4f}")
    for name, ap in (metrics.get("per_class") or {}).items():
        print(f"  {name:<20s} AP {ap:.4f}")


def cli() -> None:
    run(main)

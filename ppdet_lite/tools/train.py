"""Train a detector: python tools/train.py -c configs/ppyolo_tiny_shapes.yml --eval
[--slim_config configs/slim/prune/ppyolo_tiny_shapes_prune_fpgm.yml]  (prune / QAT / distil while training)"""
from ..utils.cli import ArgsParser, load_configs, run


def main(argv=None) -> None:
    parser = ArgsParser(description=__doc__, slim=True)
    parser.add_argument("--eval", action="store_true", help="evaluate every snapshot_epoch and keep best_model")
    parser.add_argument("-r", "--resume", default=None, help="checkpoint prefix to resume training from")
    parser.add_argument("--seed", type=int, default=None, help="fix random seeds (reproducible runs)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (GPU; a no-op on CPU)")
    parser.add_argument("--fleet", action="store_true", help="multi-node training through paddle.distributed.fleet")
    parser.add_argument("--use_vdl", action="store_true", help="write VisualDL scalars (losses, lr, mAP)")
    parser.add_argument("--vdl_log_dir", default=None, help="VisualDL log directory (default vdl_log_dir/scalar)")
    args = parser.parse_args(argv)

    cfg, slim_cfg = load_configs(args)
    # flags given on the command line win; absent ones leave the config's values alone
    for key, value in (("amp", args.amp), ("fleet", args.fleet), ("use_vdl", args.use_vdl),
                       ("vdl_log_dir", args.vdl_log_dir)):
        if value:
            cfg[key] = value
    from ..engine.report_hooks import SummaryHook
    from ..engine.trainer import Trainer

    hooks = [SummaryHook()]
    if slim_cfg is None:
        trainer = Trainer(cfg, mode="train", seed=args.seed, hooks=hooks)
    else:
        from ..slim.builder import build_slim_trainer

        trainer = build_slim_trainer(cfg, slim_cfg, seed=args.seed, hooks=hooks)
    if args.resume:
        trainer.resume(args.resume)
    trainer.train(validate=args.eval)


def cli() -> None:
    run(main)

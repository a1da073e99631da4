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
    parser.add_argument("--vdl_log_dir", default="vdl_log_dir/scalar", help="VisualDL log directory")
    args = parser.parse_args(argv)

    cfg, slim_cfg = load_configs(args)
    cfg.update(amp=args.amp, fleet=args.fleet, use_vdl=args.use_vdl, vdl_log_dir=args.vdl_log_dir)
    from ..engine.trainer import Trainer

    if slim_cfg is None:
        trainer = Trainer(cfg, mode="train", seed=args.seed)
    else:
        from ..slim import build_distill_loss, build_slim_model, distill_trainer

        model, teacher, _ = build_slim_model(cfg, slim_cfg, "train")
        trainer = Trainer(cfg, mode="train", seed=args.seed, model=model)
        if teacher is not None:
            distill_trainer(trainer, teacher, build_distill_loss(slim_cfg))
    if args.resume:
        trainer.resume(args.resume)
    metrics = trainer.train(validate=args.eval)
    trainer.summarize(metrics, validate=args.eval)


def cli() -> None:
    run(main)

"""Train a detector: python tools/train.py -c configs/ppyolo_tiny_shapes.yml --eval
[--slim_config configs/slim/prune/ppyolo_tiny_shapes_prune_fpgm.yml]  (prune / QAT / distil while training)"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ppdet_lite  # noqa: E402  (first: loads zlib before paddle)
from ppdet_lite.utils.cli import ArgsParser, load_configs, run  # noqa: E402


def main():
    parser = ArgsParser(description=__doc__, slim=True)
    parser.add_argument("--eval", action="store_true", help="evaluate every snapshot_epoch and keep best_model")
    parser.add_argument("-r", "--resume", default=None, help="checkpoint prefix to resume training from")
    parser.add_argument("--seed", type=int, default=None, help="fix random seeds (reproducible runs)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (GPU; a no-op on CPU)")
    parser.add_argument("--fleet", action="store_true", help="multi-node training through paddle.distributed.fleet")
    parser.add_argument("--use_vdl", action="store_true", help="write VisualDL scalars (losses, lr, mAP)")
    parser.add_argument("--vdl_log_dir", default="vdl_log_dir/scalar", help="VisualDL log directory")
    args = parser.parse_args()

    cfg, slim_cfg = load_configs(args)
    cfg.update(amp=args.amp, fleet=args.fleet, use_vdl=args.use_vdl, vdl_log_dir=args.vdl_log_dir)
    from ppdet_lite.engine.trainer import Trainer

    if slim_cfg is None:
        trainer = Trainer(cfg, mode="train", seed=args.seed)
    else:
        from ppdet_lite.slim import build_distill_loss, build_slim_model, distill_trainer

        model, teacher, _ = build_slim_model(cfg, slim_cfg, "train")
        trainer = Trainer(cfg, mode="train", seed=args.seed, model=model)
        if teacher is not None:
            distill_trainer(trainer, teacher, build_distill_loss(slim_cfg))
    if args.resume:
        trainer.resume(args.resume)
    metrics = trainer.train(validate=args.eval)
    trainer.summarize(metrics, validate=args.eval)


if __name__ == "__main__":
    run(main)

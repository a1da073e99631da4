"""Quantization-aware training (QAT, optionally PACT), then an int8 inference model:

    python slim/quant.py -c configs/ppyolo_tiny_shapes.yml \\
        --slim_config configs/slim/quant/ppyolo_tiny_shapes_qat.yml [--lite arm] [-o key=value ...]

Loads the slim config's pretrain_weights (the trained FP32 model), evaluates it, quantizes the
model (head output convs stay float), fine-tunes for the slim config's epochs, writes
<output_dir>/<slim config name>/ (model.pdmodel, model.pdiparams, infer_cfg.yml), evaluates that
model in Paddle Inference and prints FP32 vs INT8 mAP and sizes. --lite also writes a Paddle Lite
.nb (ppdet_lite.export.lite). Run it from the repository root.
"""
import argparse
import os

from ...core.errors import ConfigError
from ...utils.cli import ArgsParser, run


def parse_args(argv=None):
    p = ArgsParser(slim_required=True, description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="output_inference", help="the int8 model dir goes here")
    p.add_argument("--no_eval", action="store_true", help="skip the FP32 and INT8 evaluations")
    p.add_argument("--lite", choices=["arm", "x86"], help="also convert to a Paddle Lite .nb")
    return p.parse_args(argv)


def lite_nb(model_dir: str, target: str) -> str:
    """Convert ``model_dir`` to a Paddle Lite ``.nb`` for ``target``; returns the .nb path."""
    from ...export.lite import convert

    return os.path.join(convert(model_dir, target), "model.nb")


def main(argv=None) -> None:
    args = parse_args(argv)
    import paddle

    from ...engine.checkpoint import load_weights
    from ...engine.trainer import Trainer
    from ...modeling import build_model
    from .. import build_slim_model, load_slim_config
    from ..quant import evaluate_inference_model, export_quantized, model_size

    paddle.set_device("cpu")
    cfg, slim_cfg = load_slim_config(args.config, args.slim_config, args.opt)
    if cfg["slim"] != "QAT":
        raise ConfigError(f"{args.slim_config}: slim: {cfg['slim']}; this tool runs QAT")
    fp32 = {}
    if not args.no_eval and cfg.get("pretrain_weights"):
        fp32_model = build_model(cfg)
        load_weights(fp32_model, cfg["pretrain_weights"])
        fp32 = Trainer(cfg, mode="eval", model=fp32_model).evaluate()
    model, _, qat = build_slim_model(cfg, slim_cfg, "train")
    trainer = Trainer(cfg, mode="train", seed=cfg.get("seed", 0), model=model)
    print(f"== QAT fine-tune ({'PACT, ' if qat.pact else ''}{cfg.get('epoch')} epochs)")
    trainer.train(validate=not args.no_eval)
    save_dir = export_quantized(cfg, trainer.model, qat, os.path.join(args.output_dir, cfg["filename"]))
    int8 = evaluate_inference_model(save_dir, cfg) if not args.no_eval else {}
    nb = lite_nb(save_dir, args.lite) if args.lite else None

    print(f"\n{'model':<24} {'mAP':>6} {'AP50':>6} {'size(MiB)':>9}")
    print(f"{'FP32 (dygraph)':<24} {fp32.get('AP', float('nan')):6.3f} {fp32.get('AP50', float('nan')):6.3f}")
    print(f"{'QAT INT8 (Inference)':<24} {int8.get('AP', float('nan')):6.3f} "
          f"{int8.get('AP50', float('nan')):6.3f} {model_size(save_dir) / 2**20:9.2f}")
    if nb:
        print(f"{'QAT INT8 Lite ' + args.lite:<24} {'':>6} {'':>6} {os.path.getsize(nb) / 2**20:9.2f}")
    print(f"int8 model: {save_dir}")


def cli() -> None:
    run(main)

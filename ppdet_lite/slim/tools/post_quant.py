"""Post-training quantization (PTQ) of a trained model into an int8 inference model:

    python slim/post_quant.py -c configs/ppyolo_tiny_shapes.yml \\
        --slim_config configs/slim/post_quant/ppyolo_tiny_shapes_ptq.yml [--lite arm] [-o weights=...]

Exports the FP32 model (<output_dir>/<slim config name>_fp32), calibrates on PTQ.quant_batch_num
batches (--calib: TrainDataset by default, EvalDataset, or a folder of images; EvalReader
preprocessing), writes <output_dir>/<slim config name>/ with int8 weights, evaluates both in Paddle
Inference and prints mAP and sizes. --lite also writes Paddle Lite .nb files. --untrained skips the
weights (size and speed measurements only). Run it from the repository root.
"""
import argparse
import os

from ...core.config import Config
from ...core.errors import ConfigError
from ...utils.cli import ArgsParser, run


def parse_args(argv=None):
    p = ArgsParser(slim_required=True, description=__doc__,
                   formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", default="output_inference", help="model dirs go here")
    p.add_argument("--calib", default="TrainDataset",
                   help="calibration images: TrainDataset, EvalDataset or a folder of images")
    p.add_argument("--no_eval", action="store_true", help="skip the FP32 and INT8 evaluations")
    p.add_argument("--lite", choices=["arm", "x86"], help="also convert both to Paddle Lite .nb")
    p.add_argument("--untrained", action="store_true",
                   help="quantize a randomly initialised model (size / speed only; implies --no_eval)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    import paddle

    from ...core.registry import create
    from ...engine.checkpoint import load_weights
    from ...export.jit import export_model
    from ...modeling import build_model
    from .. import load_slim_config
    from ..quant import calibration_batches, evaluate_inference_model, model_size
    from .quant import lite_nb

    paddle.set_device("cpu")
    if args.calib not in ("TrainDataset", "EvalDataset", "TestDataset"):
        from ...runtime.images import IMAGE_EXTS, list_images

        if not os.path.isdir(args.calib):
            raise ConfigError(f"--calib {args.calib}: not a directory; give TrainDataset, EvalDataset or a "
                              "folder of calibration images")
        if not list_images(args.calib, recursive=True):
            raise ConfigError(f"--calib {args.calib}: no images ({', '.join(IMAGE_EXTS)}) in this folder")
    cfg, _ = load_slim_config(args.config, args.slim_config, args.opt)
    if cfg["slim"] != "PTQ":
        raise ConfigError(f"{args.slim_config}: slim: {cfg['slim']}; this tool runs PTQ")
    ptq = create("PTQ", cfg.get("PTQ") or {}, where=f"{args.slim_config}: PTQ")
    model = build_model(cfg)
    if args.untrained:
        args.no_eval = True
    else:
        if not cfg.get("weights"):
            raise ConfigError(f"{args.slim_config}: set weights (the trained FP32 model)")
        load_weights(model, cfg["weights"])
    name = cfg["filename"]
    fp32_dir = export_model(Config({**cfg, "filename": name + "_fp32"}), args.output_dir,
                            model=model)
    batches = calibration_batches(cfg, ptq.quant_batch_num, args.calib)
    int8_dir = ptq.quantize(fp32_dir, os.path.join(args.output_dir, name), batches)

    rows = []
    for label, d in (("FP32", fp32_dir), ("PTQ INT8", int8_dir)):
        metrics = {} if args.no_eval else evaluate_inference_model(d, cfg)
        nb = lite_nb(d, args.lite) if args.lite else None
        rows.append((label, metrics, model_size(d), os.path.getsize(nb) if nb else None))
    print(f"\n{'model':<10} {'mAP':>6} {'AP50':>6} {'size(MiB)':>9} {'Lite .nb (MiB)':>14}")
    for label, m, size, nb in rows:
        print(f"{label:<10} {m.get('AP', float('nan')):6.3f} {m.get('AP50', float('nan')):6.3f} "
              f"{size / 2**20:9.2f} {'' if nb is None else f'{nb / 2**20:.3f} ({nb} B)':>14}")
    print(f"mAP through Paddle Inference on EvalDataset; int8 model: {int8_dir}")


def cli() -> None:
    run(main)

"""Export a trained model for deployment (Paddle Inference / Lite / ONNX / serving):
python tools/export_model.py -c configs/ppyolo_tiny.yml -o weights=output/ppyolo_tiny/model_final \
    [--output_dir output_inference] [--onnx] [-o export.nms=False TestReader.inputs_def.image_shape=[3,320,320]]
    [--slim_config SLIM -o weights=output/<slim config name>/model_final]   (a pruned / QAT / distilled model)

Writes <output_dir>/<config name>/{model.pdmodel, model.pdiparams, infer_cfg.yml} (<slim config name>
with --slim_config; a QAT model is written as an int8 program); --onnx also writes model.onnx there
(paddle2onnx, checked in onnxruntime against Paddle Inference).
"""
import os

from ..core.errors import writable_dir
from ..utils.cli import ArgsParser, load_configs, run


def main(argv=None) -> None:
    parser = ArgsParser(description=__doc__, slim=True)
    parser.add_argument("--output_dir", default="output_inference", help="where model dirs go")
    parser.add_argument("--onnx", action="store_true", help="also convert to ONNX (model.onnx)")
    parser.add_argument("--opset_version", type=int, default=11, help="ONNX opset (<= 18)")
    args = parser.parse_args(argv)
    from ..export.jit import export_model
    from ..export.onnx_export import export_onnx

    cfg, slim_cfg = load_configs(args)
    writable_dir(args.output_dir, "--output_dir")
    if slim_cfg is None:
        save_dir = export_model(cfg, args.output_dir)
    else:
        from ..slim import build_slim_model, export_quantized

        model, _, qat = build_slim_model(cfg, slim_cfg, "export")
        save_dir = (export_model(cfg, args.output_dir, model=model) if qat is None else
                    export_quantized(cfg, model, qat, os.path.join(args.output_dir, cfg["filename"])))
    print(f"inference model: {save_dir}")
    if args.onnx:
        print(f"onnx model: {export_onnx(save_dir, opset_version=args.opset_version)}")


def cli() -> None:
    run(main)

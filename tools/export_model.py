"""Export a trained model for deployment (Paddle Inference / Lite / ONNX / serving):
python tools/export_model.py -c configs/ppyolo_tiny.yml -o weights=output/ppyolo_tiny/model_final \
    [--output_dir output_inference] [--onnx] [-o export.nms=False TestReader.inputs_def.image_shape=[3,320,320]]

Writes <output_dir>/<config name>/{model.pdmodel, model.pdiparams, infer_cfg.yml}; --onnx also
writes model.onnx there (paddle2onnx, checked in onnxruntime against Paddle Inference).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import ppdet_lite  # noqa: E402  (first: loads zlib before paddle)
from ppdet_lite.utils.cli import ArgsParser  # noqa: E402


def main(argv=None) -> None:
    parser = ArgsParser(description=__doc__)
    parser.add_argument("--output_dir", default="output_inference", help="where model dirs go")
    parser.add_argument("--onnx", action="store_true", help="also convert to ONNX (model.onnx)")
    parser.add_argument("--opset_version", type=int, default=11, help="ONNX opset (<= 18)")
    args = parser.parse_args(argv)
    from ppdet_lite.core.errors import ConfigError
    from ppdet_lite.engine.export import export_model
    from ppdet_lite.engine.onnx_export import export_onnx

    try:
        cfg = ppdet_lite.load_config(args.config, args.opt)
        save_dir = export_model(cfg, args.output_dir)
        print(f"inference model: {save_dir}")
        if args.onnx:
            print(f"onnx model: {export_onnx(save_dir, opset_version=args.opset_version)}")
    except ConfigError as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()

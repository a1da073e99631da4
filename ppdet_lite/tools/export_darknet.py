"""Write a ppdet_lite YOLOv4 model as darknet files (.cfg + .weights), readable by darknet and
OpenCV's DNN (cv2.dnn.readNetFromDarknet):

    python tools/export_darknet.py -c configs/yolov4_tiny.yml --weights model_final.pdparams \
        --cfg out.cfg -o out.weights [--size 416]

The cfg holds the inference layers ([net] with the given size, convs, routes, [yolo] with
anchors, masks, classes, scale_x_y, new_coords); add darknet's training keys to train there.
"""
import argparse
import sys

from ..core.errors import ConfigError



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help="ppdet_lite YOLOv4 config")
    parser.add_argument("--weights", required=True, help="trained .pdparams")
    parser.add_argument("--cfg", required=True, help="darknet .cfg to write")
    parser.add_argument("-o", "--output", required=True, help="darknet .weights to write")
    parser.add_argument("--size", type=int, default=416, help="[net] width and height")
    args = parser.parse_args(argv)
    from ..core.config import load_config
    from ..darknet import save_darknet
    from ..engine.checkpoint import load_weights
    from ..modeling import build_model

    try:
        model = build_model(load_config(args.config))
        load_weights(model, args.weights)
        model.eval()
        n = save_darknet(model, args.cfg, args.output, args.size, args.size)
    except (ConfigError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.cfg} and {args.output} ({n} floats)")
    return 0


def cli() -> None:
    sys.exit(main())

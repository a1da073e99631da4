"""Convert darknet YOLOv4 weights (AlexeyAB's .cfg + .weights) to a ppdet_lite .pdparams:

    python tools/convert_darknet.py --cfg yolov4.cfg --weights yolov4.weights -o yolov4.pdparams
        [-c configs/yolov4_cspdarknet53.yml]   (default: the configs/yolov4*.yml the cfg matches)

The cfg's classes= and anchors= (custom-data edits) are taken over; any other difference from the
config is an error naming the first differing cfg layer. Use the written .pdparams with the
printed config and ``-o num_classes=<n>`` when the cfg has other than 80 classes.
"""
import argparse
import sys

from ..core.errors import ConfigError



def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="darknet .cfg the weights were trained with")
    parser.add_argument("--weights", required=True, help="darknet .weights file")
    parser.add_argument("-o", "--output", required=True, help="output .pdparams path")
    parser.add_argument("-c", "--config", default=None,
                        help="ppdet_lite config (default: found among configs/yolov4*.yml)")
    args = parser.parse_args(argv)
    import paddle
    from ..darknet.convert import convert

    try:
        model, config, report = convert(args.cfg, args.weights, args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    paddle.save(model.state_dict(), args.output)
    head = config["YOLOv4Head"]
    print(f"{report['message']} (darknet {'.'.join(map(str, report['version']))}, "
          f"seen {report['seen']})")
    print(f"config: {report['config']}  num_classes: {config['num_classes']}  "
          f"anchors: {head['anchors']}  anchor_masks: {head['anchor_masks']}")
    print(f"wrote {args.output}")
    return 0


def cli() -> None:
    sys.exit(main())

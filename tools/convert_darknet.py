"""Convert darknet YOLOv4 weights (AlexeyAB's .cfg + .weights) to a ppdet_lite .pdparams (--help for the flags).

The tool lives in ppdet_lite/tools/convert_darknet.py."""
from ppdet_lite.tools.convert_darknet import cli

if __name__ == "__main__":
    cli()

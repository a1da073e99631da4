"""Convert an effdet (rwightman/efficientdet-pytorch 0.4.x, timm) checkpoint to ppdet_lite weights (--help for the flags).

The tool lives in ppdet_lite/tools/convert_effdet.py."""
from ppdet_lite.tools.convert_effdet import cli

if __name__ == "__main__":
    cli()

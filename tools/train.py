"""Train a detector: python tools/train.py -c configs/ppyolo_tiny_shapes.yml --eval

The tool lives in ppdet_lite/tools/train.py (also installed as a console script)."""
from ppdet_lite.tools.train import cli

if __name__ == "__main__":
    cli()

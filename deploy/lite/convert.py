"""Convert an exported model dir to a Paddle Lite ``.nb`` (``ppdet_lite.export.lite``; ``--help``):

    python deploy/lite/convert.py --model_dir output_inference/ppyolo_tiny --valid_targets arm
"""
from ppdet_lite.export.lite import cli

if __name__ == "__main__":
    cli()

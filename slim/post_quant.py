"""Post-training quantization (PTQ) of a trained model into an int8 inference model
(``ppdet_lite.slim.tools.post_quant``; ``--help``)."""
from ppdet_lite.slim.tools.post_quant import cli

if __name__ == "__main__":
    cli()

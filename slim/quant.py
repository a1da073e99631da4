"""Quantization-aware training (QAT, PACT optionally), then an int8 inference model
(``ppdet_lite.slim.tools.quant``; ``--help``)."""
from ppdet_lite.slim.tools.quant import cli

if __name__ == "__main__":
    cli()

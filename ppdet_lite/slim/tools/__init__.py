"""The slim command lines (``quant``: QAT, ``post_quant``: PTQ, ``prune_distill``: prune and distil,
compare): each module has ``main(argv)`` and ``cli()``; ``slim/*.py`` call ``cli()``."""

"""The command-line tools (train, eval, infer, export_model, anchor_cluster): each module has ``main(argv)``
and ``cli()``; ``tools/*.py`` and the ``ppdet-*`` console scripts call ``cli()``."""

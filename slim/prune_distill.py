"""Prune a PP-YOLO model, fine-tune it with distillation from the unpruned one, compare all three
(``ppdet_lite.slim.tools.prune_distill``; ``--help``)."""
from ppdet_lite.slim.tools.prune_distill import cli

if __name__ == "__main__":
    cli()

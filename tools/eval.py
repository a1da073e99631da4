"""Evaluate weights on EvalDataset: python tools/eval.py -c CONFIG -o weights=output/NAME/best_model

The tool lives in ppdet_lite/tools/eval.py (also installed as a console script)."""
from ppdet_lite.tools.eval import cli

if __name__ == "__main__":
    cli()

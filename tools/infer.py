"""Detect objects in images and write annotated copies:

The tool lives in ppdet_lite/tools/infer.py (also installed as a console script)."""
from ppdet_lite.tools.infer import cli

if __name__ == "__main__":
    cli()

"""Export a trained model for deployment (Paddle Inference / Lite / ONNX / serving):

The tool lives in ppdet_lite/tools/export_model.py (also installed as a console script)."""
from ppdet_lite.tools.export_model import cli

if __name__ == "__main__":
    cli()

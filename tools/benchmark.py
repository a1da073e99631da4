"""Latency and mAP of one model on every installed backend (Paddle Inference FP32 / oneDNN / INT8,
ONNX Runtime, Paddle Lite x86 FP32 / INT8): python tools/benchmark.py -c CONFIG -o weights=...
[--cpu_threads 2] or --model_dir DIR

The tool lives in ppdet_lite/tools/benchmark.py (also installed as a console script)."""
from ppdet_lite.tools.benchmark import cli

if __name__ == "__main__":
    cli()

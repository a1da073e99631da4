"""Export: a trained detector to PaddleDetection's inference format, ONNX and Paddle Lite, the
post-export program readers and edits, and the one Paddle Inference predictor factory.

Nothing here imports the training loop or switches the process's device.
"""

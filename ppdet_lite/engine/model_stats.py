"""Model size: trainable parameters and PaddleSlim FLOPs of one image, post-processing excluded.

Used by the trainer's ``print_params`` / ``print_flops`` and by pruning (``ppdet_lite.slim.prune``).
FLOPs are PaddleSlim's ``dygraph_flops`` count (multiply-adds of conv/matmul plus element-wise ops)
at batch 1 on a ``(C, H, W)`` input of ones.
"""
from contextlib import contextmanager
from typing import Dict, List, Sequence

import numpy as np
import paddle
import paddle.nn as nn

__all__ = ["count_flops", "count_params", "traceable", "dummy_inputs"]


@contextmanager
def traceable(model: nn.Layer):
    """Eval mode without post-processing (NMS adds nothing to channel dependencies or FLOPs)."""
    training = model.training
    had = hasattr(model, "exclude_post_process")
    old = getattr(model, "exclude_post_process", None)
    model.eval()
    if had:
        model.exclude_post_process = True
    try:
        yield
    finally:
        if had:
            model.exclude_post_process = old
        if training:
            model.train()


def dummy_inputs(image_shape: Sequence[int]) -> List[Dict[str, paddle.Tensor]]:
    """One ``image`` [1, C, H, W] of ones with its ``im_shape`` and unit ``scale_factor``."""
    c, h, w = image_shape
    return [{"image": paddle.ones([1, c, h, w], "float32"),
             "im_shape": paddle.to_tensor([[float(h), float(w)]]),
             "scale_factor": paddle.ones([1, 2], "float32")}]


def count_flops(model: nn.Layer, image_shape: Sequence[int] = (3, 640, 640)) -> int:
    """PaddleSlim FLOPs of one ``image_shape`` (C, H, W) image, post-processing excluded."""
    from paddleslim.analysis import dygraph_flops

    with traceable(model):
        return int(dygraph_flops(model, dummy_inputs(image_shape)))


def count_params(model: nn.Layer) -> int:
    """Trainable parameters (BatchNorm statistics excluded)."""
    return int(sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient))

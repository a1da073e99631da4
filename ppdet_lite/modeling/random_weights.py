"""BN-calibrated random weights for a detector (YOLO family or EfficientDet): a network that
behaves like a trained one numerically (activations O(1) at every depth, finite boxes), for
parity tests and latency benchmarks without trained weights."""
from typing import Tuple

import numpy as np
import paddle
import paddle.nn as nn

__all__ = ["randomize"]


def randomize(model, size: int = 128, seed: int = 0, batch: int = 4, mean=None, std=None,
              shift: Tuple[float, float] = (-0.1, 0.1)) -> None:
    """(A YOLO model, or an EfficientDet: anything with backbone, neck and yolo_head / head.)
    Random weights with BN running statistics calibrated on a random batch (``batch`` images
    of ``size`` x ``size``: enough values per channel at stride 32..128), so activations
    stay O(1) however deep the net: BN scale U(0.1, 0.3), shift U(*shift) (default -0.1, 0.1).
    ``mean``, ``std`` (per channel): the images are normalised as the model's reader does (e.g.
    ImageNet's). A positive ``shift`` (e.g. (0.2, 0.4)) puts most units on the linear side of
    leaky_relu / swish: a less chaotic random net, in which a small perturbation (int8 rounding)
    does not grow layer by layer (see tests/slim/test_ptq_families.py).

    Convs followed by BN get weights N(0, 100²/fan_in): their outputs' variance is then far above
    BN's epsilon, so OpenCV's epsilon (1e-6) and darknet's (1e-5, ours) give the same numbers
    to float precision. The biased output convs get N(0, 0.25/fan_in) and biases U(-0.5, 0.5)
    (raw outputs within about ±1.5, so exp() keeps boxes finite). Leaves ``model`` in eval mode.
    """
    rng = np.random.RandomState(seed)
    bns = [m for m in model.sublayers() if isinstance(m, nn.BatchNorm2D)]
    for m in model.sublayers():
        if isinstance(m, nn.Conv2D):
            fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
            gain = .5 if m.bias is not None else 100.
            m.weight.set_value(rng.randn(*m.weight.shape).astype("float32") * gain
                               / np.sqrt(fan_in))
            if m.bias is not None:
                m.bias.set_value(rng.uniform(-.5, .5, m.bias.shape).astype("float32"))
    for bn in bns:
        bn.weight.set_value(rng.uniform(0.1, 0.3, bn.weight.shape).astype("float32"))
        bn.bias.set_value(rng.uniform(*shift, bn.bias.shape).astype("float32"))
    model.eval()
    momentum = [bn._momentum for bn in bns]
    for bn in bns:  # running stats := this batch's statistics
        bn.training, bn._momentum = True, 0.
    image = rng.uniform(0, 1, (batch, 3, size, size))
    if mean is not None:  # the model's input normalisation (darknet's: none)
        image = (image - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))
    image = paddle.to_tensor(image.astype("float32"))
    head = model.yolo_head if hasattr(model, "yolo_head") else model.head  # YOLO / EfficientDet
    with paddle.no_grad():
        head(model.neck(model.backbone({"image": image})))
    for bn, m in zip(bns, momentum):
        bn.training, bn._momentum = False, m

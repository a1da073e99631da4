"""Helpers for parity tests against PaddleDetection: shared random weights, output diffs, counts."""
from typing import Dict, List, Sequence

import numpy as np
import paddle
import pytest


def import_ppdet(module: str):
    """Import a PaddleDetection module, or skip the test when PaddleDetection is not installed."""
    pytest.importorskip("ppdet", reason="PaddleDetection 2.6.0 (the parity oracle) is not installed")
    import importlib

    return importlib.import_module(module)


def random_state(reference: paddle.nn.Layer, seed: int = 0) -> Dict[str, np.ndarray]:
    """Random values for every state_dict entry of ``reference``: weights ~N(0, 0.05),
    BN scale ~1+N(0, 0.05), BN variance ~U(0.5, 1.5), so outputs stay O(1) through deep nets."""
    rng = np.random.RandomState(seed)
    state = {}
    for key, value in reference.state_dict().items():
        shape = value.shape
        if key.endswith("_variance"):
            arr = rng.uniform(0.5, 1.5, shape)
        else:
            arr = rng.randn(*shape) * 0.05
            if key.endswith("norm.weight") or key.endswith("batch_norm.weight"):
                arr += 1.0
        state[key] = arr.astype("float32")
    return state


def assert_same_keys(ours: paddle.nn.Layer, theirs: paddle.nn.Layer):
    """Identical state_dict keys (same order) and shapes."""
    a, b = ours.state_dict(), theirs.state_dict()
    assert set(a) == set(b), \
        f"only ours: {sorted(set(a) - set(b))[:5]}, only theirs: {sorted(set(b) - set(a))[:5]}"
    assert list(a) == list(b)
    for key in a:
        assert list(a[key].shape) == list(b[key].shape), key


def load_both(ours: paddle.nn.Layer, theirs: paddle.nn.Layer, seed: int = 0):
    """Put the same random weights into both models and switch them to eval mode."""
    state = random_state(theirs, seed)
    ours.set_state_dict(state)
    theirs.set_state_dict(state)
    ours.eval()
    theirs.eval()


def max_diffs(outs_a: Sequence[paddle.Tensor], outs_b: Sequence[paddle.Tensor]) -> List[float]:
    assert len(outs_a) == len(outs_b)
    diffs = []
    for a, b in zip(outs_a, outs_b):
        assert a.shape == b.shape
        diffs.append(float((a - b).abs().max()))
    return diffs


def trainable(layer: paddle.nn.Layer) -> int:
    """Number of parameters that receive gradients (PaddleDetection's 'trainable' count)."""
    return sum(int(np.prod(p.shape)) for p in layer.parameters() if not p.stop_gradient)


def tensor(shape: Sequence[int], seed: int = 1) -> paddle.Tensor:
    return paddle.to_tensor(np.random.RandomState(seed).randn(*shape).astype("float32"))

"""Depthwise convs as unfold + matmul while training on small maps (modeling/depthwise.py)."""
import copy

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from ppdet_lite.modeling import depthwise
from ppdet_lite.modeling.depthwise import use_matmul_depthwise


def run(conv, x):
    x = paddle.to_tensor(x, stop_gradient=False)
    y = conv(x)
    (y * y).sum().backward()
    grads = x.grad.numpy(), conv.weight.grad.numpy(), \
        None if conv.bias is None else conv.bias.grad.numpy()
    conv.clear_gradients()
    return y.numpy(), grads


@pytest.mark.parametrize("c, size, k, stride, padding, bias", [
    (8, 6, 3, 1, 1, False), (8, 7, 3, 2, "SAME", False), (6, 5, 5, 2, "SAME", True),
    (4, 3, 5, 1, 2, True), (4, 1, 3, 1, 1, False), (4, 6, 3, 1, "VALID", False),
    (4, 6, 3, 1, [1, 1], False)])
def test_matmul_depthwise_equals_the_native_conv(c, size, k, stride, padding, bias):
    """Outputs and gradients (input, weight, bias) of the native depthwise conv, in train mode
    on maps below the threshold, for paddings 'SAME' (odd pixel after), 'VALID', int, pair."""
    paddle.seed(0)
    conv = nn.Conv2D(c, c, k, stride=stride, padding=padding, groups=c,
                     bias_attr=None if bias else False)
    x = np.random.RandomState(0).randn(2, c, size, size + 1).astype("float32")
    ref = run(conv, x)
    assert use_matmul_depthwise(conv, max_pixels=64) == 1
    out = run(conv, x)
    np.testing.assert_allclose(out[0], ref[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(out[1], ref[1]):
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.fixture
def calls(monkeypatch):
    """How many times the matmul path ran."""
    count = [0]
    real = depthwise.matmul_depthwise

    def spy(*args):
        count[0] += 1
        return real(*args)

    monkeypatch.setattr(depthwise, "matmul_depthwise", spy)
    return count


def test_only_small_maps_in_training_switch(calls):
    paddle.seed(0)
    net = nn.Sequential(nn.Conv2D(4, 4, 3, padding=1, groups=4),       # 8x8 map: native
                        nn.Conv2D(4, 4, 3, stride=2, padding=1, groups=4),  # 4x4 out: matmul
                        nn.Conv2D(4, 8, 1))                             # not depthwise
    assert use_matmul_depthwise(net, max_pixels=36) == 2
    x = paddle.randn([2, 4, 8, 8])
    net.train()
    net(x)
    assert calls[0] == 1
    net.eval()  # eval (and export): always the native op, bit for bit
    ref = nn.Conv2D.forward(net[1], nn.Conv2D.forward(net[0], x))
    assert np.array_equal(net[1](net[0](x)).numpy(), ref.numpy()) and calls[0] == 1
    use_matmul_depthwise(net, max_pixels=0)  # 0: never
    net.train()
    net(x)
    assert calls[0] == 1


def test_a_deep_copy_computes_with_its_own_weights():
    """ModelEMA and distillation copy models: the copy's convs must use the copy's weights."""
    conv = nn.Conv2D(4, 4, 3, padding=1, groups=4)
    use_matmul_depthwise(conv)
    twin = copy.deepcopy(conv)
    twin.weight.set_value(np.zeros(twin.weight.shape, "float32"))
    twin.train()
    x = paddle.randn([1, 4, 4, 4])
    assert float(twin(x).abs().max()) == float(twin.bias.abs().max())
    assert float(conv(x).abs().max()) > float(conv.bias.abs().max())


def test_build_model_applies_the_config_setting():
    import ppdet_lite

    cfg = ppdet_lite.load_config("configs/ppyolo_tiny.yml", {"pretrain_weights": ""})
    convs = [m for m in ppdet_lite.build_model(cfg).sublayers() if getattr(m, "_groups", 1) > 1]
    assert convs and not any(hasattr(m, "_matmul_max_pixels") for m in convs)  # off by default
    cfg["depthwise_matmul_max_pixels"] = 36
    convs = [m for m in ppdet_lite.build_model(cfg).sublayers() if getattr(m, "_groups", 1) > 1]
    assert all(m._matmul_max_pixels == 36 for m in convs)

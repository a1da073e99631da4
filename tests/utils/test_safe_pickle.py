"""Checkpoint files are read without running code: real ones load, crafted or broken ones are refused."""
import os
import pickle

import numpy as np
import paddle
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.utils.safe_pickle import load_checkpoint_file


def _model():
    return paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))


def test_paddle_saved_weights_and_optimizer_state_load(tmp_path):
    model = _model()
    opt = paddle.optimizer.AdamW(learning_rate=paddle.optimizer.lr.CosineAnnealingDecay(0.01, 10),
                                 parameters=model.parameters())
    model(paddle.rand([1, 3, 8, 8])).mean().backward()
    opt.step()
    paddle.save(model.state_dict(), str(tmp_path / "m.pdparams"))
    paddle.save(opt.state_dict(), str(tmp_path / "m.pdopt"))
    weights = load_checkpoint_file(str(tmp_path / "m.pdparams"))
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(weights[key], value.numpy())
    other = _model()
    other.set_state_dict(weights)
    np.testing.assert_array_equal(other[0].weight.numpy(), model[0].weight.numpy())
    state = load_checkpoint_file(str(tmp_path / "m.pdopt"))
    assert state["LR_Scheduler"]["last_epoch"] == opt.state_dict()["LR_Scheduler"]["last_epoch"]


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as f:
        pickle.dump({"conv.weight": np.zeros(3, np.float32), "x": _RunsCode(marker)}, f, protocol=4)
    with pytest.raises(ConfigError, match=r"evil\.pdparams: refused to load: it asks to import (posix|os)\.system"):
        load_checkpoint_file(str(path))
    assert not marker.exists()
    pickle.load(open(path, "rb"))  # the file really runs code when unpickled plainly
    assert marker.exists()


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"conv.weight: 1 2 3\n", "not a Paddle checkpoint .*text"),
    (bytes(range(5, 255)), "not a Paddle checkpoint .*binary"),
    (None, "truncated or corrupt"),
])
def test_broken_files_name_the_file_and_the_reason(tmp_path, content, message):
    path = tmp_path / "broken.pdparams"
    if content is None:  # a real checkpoint cut in half
        paddle.save(_model().state_dict(), str(path))
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"broken.pdparams: {message}"):
        load_checkpoint_file(str(path))


def test_a_pickled_non_dict_is_refused(tmp_path):
    path = tmp_path / "list.pdparams"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    with pytest.raises(ConfigError, match="holds a list"):
        load_checkpoint_file(str(path))

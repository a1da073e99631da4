# zlib before paddle: Paddle 2.6.2 imported first breaks zlib (see ppdet_lite/__init__.py).
import zlib  # noqa: F401
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("FLAGS_paddle_num_threads", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests that train or export (seconds to a minute)")


@pytest.fixture(autouse=True)
def _cpu_and_seed():
    import paddle

    paddle.set_device("cpu")
    paddle.seed(0)
    yield

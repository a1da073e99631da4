import os

import ppdet_lite  # noqa: F401  (first: it loads zlib before paddle, see ppdet_lite/__init__.py)

import pytest

os.environ.setdefault("FLAGS_paddle_num_threads", "2")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end tests that train or export (seconds to a minute)")


@pytest.fixture(autouse=True)
def _cpu_and_seed():
    import paddle

    paddle.set_device("cpu")
    paddle.seed(0)
    yield

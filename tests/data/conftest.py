"""Shared fixtures for the data tests: one small generated shapes split per session."""

import pytest


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    from ppdet_lite.data.shapes import make_shapes_dataset

    root = str(tmp_path_factory.mktemp("shapes"))
    make_shapes_dataset(root, num_train=24, num_val=8, image_size=128, seed=3)
    return root


def ppdet_or_skip():
    """PaddleDetection 2.6 (the reference), or skip the test."""
    return pytest.importorskip("ppdet", reason="PaddleDetection (ppdet) not installed: reference "
                                               "comparison skipped")

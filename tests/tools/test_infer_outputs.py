"""tools/infer.py never writes an annotated copy over an image it reads, and checks its threshold."""
import argparse
import os

import pytest

from ppdet_lite.runtime.images import annotated_path
from ppdet_lite.utils.cli import score_threshold


def test_an_input_inside_the_output_dir_is_not_overwritten(tmp_path):
    out = tmp_path / "output"
    out.mkdir()
    (out / "a.jpg").write_bytes(b"x")
    (out / "a_det.jpg").write_bytes(b"x")
    elsewhere = tmp_path / "b.jpg"
    inputs = [str(out / "a.jpg"), str(out / "a_det.jpg"), str(elsewhere)]
    assert annotated_path(str(out), inputs[0], inputs) == str(out / "a_det2.jpg")
    assert annotated_path(str(out), str(elsewhere), inputs) == str(out / "b.jpg")
    # the same file reached through another spelling of the path is still protected
    assert annotated_path(str(out) + "/.", os.path.join(str(out), "..", "output", "a.jpg"),
                          [os.path.join(str(tmp_path), ".", "output", "a.jpg")]).endswith("a_det.jpg")


@pytest.mark.parametrize("text", ["2", "-1", "nan", "abc"])
def test_draw_threshold_outside_0_1_is_a_usage_error(text):
    with pytest.raises(argparse.ArgumentTypeError, match="score threshold in"):
        score_threshold(text)
    assert score_threshold("0") == 0.0 and score_threshold("1") == 1.0

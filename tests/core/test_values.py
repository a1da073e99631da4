"""Bad values fail when the config loads (or a component is built), naming the key, the value and the
file, instead of as a traceback deep in training."""
import os

import pytest

import ppdet_lite
from ppdet_lite.core.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml")


@pytest.mark.parametrize("override, message", [
    ("epoch=ten", r"epoch: expected an integer >= 1, got 'ten'"),
    ("epoch=0", r"epoch: 0 is out of range: expected an integer >= 1"),
    ("TrainReader.batch_size=-1", r"TrainReader.batch_size: -1 is out of range"),
    ("TrainReader.batch_size=0", r"TrainReader.batch_size: 0 is out of range"),
    ("EvalReader.batch_size=2.5", r"EvalReader.batch_size: expected an integer"),
    ("num_classes=-3", r"num_classes: -3 is out of range"),
    ("num_classes=0", r"num_classes: 0 is out of range"),
    ("snapshot_epoch=0", r"snapshot_epoch: 0 is out of range"),
    ("log_iter=0", r"log_iter: 0 is out of range"),
    ("LearningRate.base_lr=abc", r"LearningRate.base_lr: expected a number > 0, got 'abc'"),
    ("LearningRate.base_lr=0", r"LearningRate.base_lr: 0 is out of range"),
    ("seed=abc", r"seed: expected an integer, got 'abc'"),
    ("use_ema=1", None),  # not one of the checked keys: loads
    ("ema_decay=1.5", r"ema_decay: 1.5 is out of range"),
    ("epoch=true", r"epoch: expected an integer >= 1, got True"),
])
def test_top_level_values(override, message):
    if message is None:
        ppdet_lite.load_config(CONFIG, [override])
        return
    with pytest.raises(ConfigError, match=message) as err:
        ppdet_lite.load_config(CONFIG, [override])
    assert "<overrides>" in str(err.value) and "-o " in str(err.value)


def test_a_bad_value_in_a_file_names_that_file(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text(f"_BASE_: ['{CONFIG}']\nsnapshot_epoch: 0\n")
    with pytest.raises(ConfigError, match=r"mine\.yml: snapshot_epoch: 0 is out of range"):
        ppdet_lite.load_config(str(path))


def test_a_component_section_must_be_a_mapping(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text(f"_BASE_: ['{CONFIG}']\nYOLOv3Head: 5\n")
    with pytest.raises(ConfigError, match=r"mine\.yml: the YOLOv3Head section must be a mapping"):
        ppdet_lite.load_config(str(path))


def test_a_non_utf8_config_is_named(tmp_path):
    path = tmp_path / "latin1.yml"
    path.write_bytes("epoch: 3  # d\xe9j\xe0\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yml: not UTF-8 text"):
        ppdet_lite.load_config(str(path))


@pytest.mark.parametrize("override, message", [
    ("YOLOv3Loss.ignore_thresh=abc", r"YOLOv3Loss.ignore_thresh: expected a number, got 'abc'"),
    ("YOLOv3Loss.label_smooth=3", r"YOLOv3Loss.label_smooth: expected true or false, got 3"),
    ("MobileNetV3.model_name=5", r"MobileNetV3.model_name: expected a string, got 5"),
])
def test_component_arguments_are_checked_against_their_annotations(override, message):
    cfg = ppdet_lite.load_config(CONFIG, [override])
    with pytest.raises(ConfigError, match=message):
        ppdet_lite.build_model(cfg)

"""Config loading: _BASE_ inheritance, -o overrides, tags, and the errors users see."""
import os
import textwrap

import pytest

from ppdet_lite.core.config import load_config
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.core.registry import create, register

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return str(path)


@register
class _ToyNeck:
    def __init__(self, width: int = 8, spp: bool = False, in_channels=None):
        self.width, self.spp, self.in_channels = width, spp, in_channels


def test_base_chain_relative_paths_order_and_deep_merge(tmp_path):
    write(tmp_path / "base" / "model.yml", """
        epoch: 10
        _ToyNeck: {width: 8, spp: false}
        TrainReader: {batch_size: 8, shuffle: true}
    """)
    write(tmp_path / "base" / "more.yml", """
        _BASE_: ['model.yml']
        epoch: 20
        TrainReader: {batch_size: 16}
    """)
    path = write(tmp_path / "top.yml", """
        _BASE_: ['base/more.yml']
        _ToyNeck: {spp: true}
        TrainDataset: !COCODataSet {dataset_dir: data, anno_path: a.json}
    """)
    cfg = load_config(path)
    assert cfg["epoch"] == 20                                  # later file wins
    assert cfg["TrainReader"] == {"batch_size": 16, "shuffle": True}   # nested dicts deep-merged
    assert cfg["_ToyNeck"] == {"width": 8, "spp": True}
    assert cfg["TrainDataset"] == {"name": "COCODataSet", "dataset_dir": "data", "anno_path": "a.json"}
    assert cfg.source("epoch").endswith("more.yml")
    assert cfg.source("_ToyNeck").endswith("top.yml")
    assert cfg["filename"] == "top"


def test_base_paths_are_a_files_own_bases(tmp_path):
    from ppdet_lite.core.config import base_paths

    write(tmp_path / "base" / "a.yml", "_BASE_: ['b.yml']\n")
    write(tmp_path / "base" / "b.yml", "epoch: 1\n")
    slim = write(tmp_path / "slim" / "s.yml", "_BASE_: ['../base/a.yml']\nlr: !CosineDecay {}\n")
    assert base_paths(slim) == [os.path.normpath(str(tmp_path / "base" / "a.yml"))]  # not b.yml
    assert base_paths(write(tmp_path / "c.yml", "_BASE_: base/b.yml\n")) == \
        [os.path.normpath(str(tmp_path / "base" / "b.yml"))]
    assert base_paths(str(tmp_path / "base" / "b.yml")) == []


def test_overrides_are_yaml_typed_and_dotted(tmp_path):
    path = write(tmp_path / "c.yml", "TrainReader: {batch_size: 8}\nepoch: 3\n")
    cfg = load_config(path, ["TrainReader.batch_size=4", "epoch=12", "use_gpu=False",
                             "TestReader.inputs_def.image_shape=[3,320,320]", "weights=out/m"])
    assert cfg["TrainReader"]["batch_size"] == 4 and cfg["epoch"] == 12 and cfg["use_gpu"] is False
    assert cfg["TestReader"]["inputs_def"]["image_shape"] == [3, 320, 320]
    assert cfg["weights"] == "out/m"
    cfg2 = load_config(path, {"LearningRate.base_lr": 0.01})
    assert cfg2["LearningRate"]["base_lr"] == 0.01


def test_changing_the_dataset_type_does_not_inherit_old_keys(tmp_path):
    write(tmp_path / "b.yml", "TrainDataset: !COCODataSet {dataset_dir: coco, anno_path: a.json}\n")
    path = write(tmp_path / "t.yml", "_BASE_: [b.yml]\nTrainDataset: !VOCDataSet {dataset_dir: voc}\n")
    assert load_config(path)["TrainDataset"] == {"name": "VOCDataSet", "dataset_dir": "voc"}


def test_misspelt_top_level_key_names_file_and_closest(tmp_path):
    path = write(tmp_path / "bad.yml", "TrainReadr: {batch_size: 8}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "bad.yml" in str(e.value) and "TrainReadr" in str(e.value) and "TrainReader" in str(e.value)


def test_misspelt_component_key_and_class_name():
    with pytest.raises(ConfigError) as e:
        create("_ToyNeck", {"widht": 3}, where="model.yml: _ToyNeck")
    msg = str(e.value)
    assert "model.yml" in msg and "widht" in msg and "width" in msg
    with pytest.raises(ConfigError) as e:
        create("_ToyNek", {}, where="model.yml: YOLOv3.neck")
    assert "_ToyNeck" in str(e.value) and "YOLOv3.neck" in str(e.value)
    neck = create("_ToyNeck", {"width": 3}, in_channels=[1, 2])
    assert neck.width == 3 and neck.in_channels == [1, 2]


def test_missing_base_and_bad_override(tmp_path):
    path = write(tmp_path / "t.yml", "_BASE_: [nope.yml]\n")
    with pytest.raises(ConfigError, match="nope.yml"):
        load_config(path)
    ok = write(tmp_path / "ok.yml", "epoch: 1\n")
    with pytest.raises(ConfigError, match="key=value"):
        load_config(ok, ["epoch"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.yml"))


def test_shipped_tiny_config_loads():
    cfg = load_config(os.path.join(ROOT, "configs", "ppyolo_tiny.yml"))
    assert cfg["architecture"] == "YOLOv3" and cfg["num_classes"] == 80 and cfg["epoch"] == 650
    assert cfg["LearningRate"]["schedulers"][0]["name"] == "PiecewiseDecay"
    assert cfg["TrainDataset"]["name"] == "COCODataSet"


def test_switching_optimizer_type_replaces_its_keys(tmp_path):
    write(tmp_path / "b.yml", "OptimizerBuilder: {optimizer: {type: Momentum, momentum: 0.9}, clip_grad_by_norm: 35}\n")
    path = write(tmp_path / "t.yml", "_BASE_: [b.yml]\nOptimizerBuilder: {optimizer: {type: AdamW}}\n")
    cfg = load_config(path)
    assert cfg["OptimizerBuilder"] == {"optimizer": {"type": "AdamW"}, "clip_grad_by_norm": 35}

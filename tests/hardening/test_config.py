"""Config value and file errors, through every tool that reads a config: exit 2, one ``error:`` line
naming the file or key, the value and the fix."""
import pytest

from .helpers import base_args, refused, run_tool

CONFIG_TOOLS = ["train", "eval", "infer", "export", "anchor_cluster"]
SLIM_TOOLS = ["quant", "post_quant", "prune_distill"]

# (-o override, words the error line must contain)
VALUES = {
    "epoch=ten": ["epoch", "'ten'"],
    "epoch=0": ["epoch", "0"],
    "epoch=-1": ["epoch", "-1"],
    "epoch=1.5": ["epoch", "1.5"],
    "TrainReader.batch_size=-1": ["TrainReader.batch_size", "-1"],
    "TrainReader.batch_size=0": ["TrainReader.batch_size", "0"],
    "TrainReader.batch_size=abc": ["TrainReader.batch_size", "'abc'"],
    "EvalReader.batch_size=0": ["EvalReader.batch_size", "0"],
    "num_classes=-3": ["num_classes", "-3"],
    "num_classes=0": ["num_classes", "0"],
    "snapshot_epoch=0": ["snapshot_epoch", "0"],
    "log_iter=0": ["log_iter", "0"],
    "LearningRate.base_lr=abc": ["LearningRate.base_lr", "'abc'"],
    "LearningRate.base_lr=0": ["LearningRate.base_lr", "0"],
    "LearningRate.base_lr=.nan": ["LearningRate.base_lr", "nan"],
    "seed=abc": ["seed", "'abc'"],
    "worker_num=-1": ["worker_num", "-1"],
    "ema_decay=2": ["ema_decay", "2"],
    "foo=1": ["foo"],
    "epochs=3": ["epochs", "epoch"],
    "epoch": ["epoch", "key=value"],
    "YOLOv3Head=5": ["YOLOv3Head", "5"],
    "TrainReader.batch_size.x=1": ["TrainReader.batch_size"],
    "eval=true": ["eval", "--eval"],
}

# (name, file content as bytes, words); each is written as the -c config
FILES = {
    "non_utf8": (b"epoch: 3\nnote: \xff\xfe caf\xe9\n", ["not UTF-8"]),
    "yaml_syntax": (b"epoch: [1, 2\nlog_iter: 3\n", ["invalid YAML"]),
    "yaml_tab": (b"TrainReader:\n\tbatch_size: 2\n", ["invalid YAML"]),
    "top_level_list": (b"- epoch\n- 3\n", ["mapping"]),
    "top_level_scalar": (b"just text\n", ["mapping"]),
    "random_bytes": (bytes(range(256)) * 4, []),
    "empty": (b"", []),
    "base_missing": (b"_BASE_: ['no_such_base.yml']\n", ["no_such_base.yml"]),
    "tag_scalar": (b"_BASE_: ['tiny.yml']\nTrainDataset: !COCODataSet 5\n", ["COCODataSet"]),
}


@pytest.mark.parametrize("override", list(VALUES))
@pytest.mark.parametrize("tool", CONFIG_TOOLS)
def test_bad_override(tool, override, ws, tmp_path):
    refused(run_tool(tool, base_args(tool, ws, tmp_path) + ["-o", override]), *VALUES[override])


@pytest.mark.parametrize("override", ["epoch=ten", "TrainReader.batch_size=0", "foo=1", "seed=abc"])
@pytest.mark.parametrize("tool", SLIM_TOOLS)
def test_bad_override_slim(tool, override, ws, tmp_path):
    refused(run_tool(tool, base_args(tool, ws, tmp_path) + ["-o", override]), *VALUES[override])


def _config_file(ws, tmp_path, name):
    import shutil

    shutil.copy(ws.cfg, tmp_path / "tiny.yml")  # for the relative _BASE_ of tag_scalar
    path = tmp_path / f"{name}.yml"
    path.write_bytes(FILES[name][0])
    return str(path)


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("tool", CONFIG_TOOLS + SLIM_TOOLS)
def test_bad_config_file(tool, name, ws, tmp_path):
    path = _config_file(ws, tmp_path, name)
    refused(run_tool(tool, base_args(tool, ws, tmp_path, config=path)), path, *FILES[name][1])


@pytest.mark.parametrize("tool", CONFIG_TOOLS + SLIM_TOOLS)
def test_missing_config_file(tool, ws, tmp_path):
    path = str(tmp_path / "nope.yml")
    refused(run_tool(tool, base_args(tool, ws, tmp_path, config=path)), path)


@pytest.mark.parametrize("tool", CONFIG_TOOLS)
def test_config_is_a_directory(tool, ws, tmp_path):
    refused(run_tool(tool, base_args(tool, ws, tmp_path, config=str(tmp_path))), str(tmp_path))


@pytest.mark.parametrize("tool", CONFIG_TOOLS)
def test_base_cycle(tool, ws, tmp_path):
    (tmp_path / "a.yml").write_text("_BASE_: ['b.yml']\n")
    (tmp_path / "b.yml").write_text("_BASE_: ['a.yml']\n")
    refused(run_tool(tool, base_args(tool, ws, tmp_path, config=str(tmp_path / "a.yml"))), "cycle")


@pytest.mark.parametrize("override, words", [
    ("YOLOv3Loss.ignore_thres=0.6", ["ignore_thres", "ignore_thresh"]),
    ("architecture=NoSuchNet", ["NoSuchNet"]),
    ("YOLOv3Head.anchors=abc", ["anchors"]),
])
@pytest.mark.parametrize("tool", ["train", "eval", "infer", "export"])
def test_bad_component_arguments(tool, override, words, ws, tmp_path):
    refused(run_tool(tool, base_args(tool, ws, tmp_path) + ["-o", override]), *words)


@pytest.mark.parametrize("override, words", [
    ("TrainReader=5", ["TrainReader", "5"]),
    ("LearningRate=abc", ["LearningRate"]),
    ("TrainReader.sample_transforms=5", ["sample_transforms"]),
    ("OptimizerBuilder.optimizer.type=NoSuchOpt", ["NoSuchOpt"]),
])
def test_bad_training_sections(override, words, ws, tmp_path):
    refused(run_tool("train", base_args("train", ws, tmp_path) + ["-o", override]), *words)

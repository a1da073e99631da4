"""Session fixtures of the bad-input corpus: one tiny shapes workspace (4 train / 2 val images at
64 px, batch 2, a config file over configs/ppyolo_tiny_shapes.yml), weights of that model and of
another, a finished run, an exported model dir, and builders of broken copies."""
import json
import os
import shutil
from types import SimpleNamespace

import pytest
import yaml

from .helpers import DEMO, ROOT


def tiny_yaml(root: str, **extra) -> dict:
    data = os.path.join(root, "shapes")
    doc = {
        "_BASE_": [DEMO],
        "TrainDataset": {"name": "ShapesDataSet", "dataset_dir": data, "num_images": 4, "image_size": 64},
        "EvalDataset": {"name": "ShapesDataSet", "dataset_dir": data, "num_images": 2, "image_size": 64},
        "TestDataset": {"name": "ImageFolder", "dataset_dir": data},
        "TrainReader": {"batch_size": 2}, "EvalReader": {"batch_size": 2},
        "worker_num": 0, "save_dir": os.path.join(root, "output"), "epoch": 1, "snapshot_epoch": 1,
        "log_iter": 1, "LearningRate": {"schedulers": [{"name": "LinearWarmup", "start_factor": 0.1, "steps": 1}]},
    }
    doc.update(extra)
    return doc


def write_yaml(path: str, doc: dict) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


@pytest.fixture(scope="session")
def ws(tmp_path_factory):
    """namespace(root, cfg: the tiny config file, weights, other_weights (another model's), image,
    data: the shapes dir, coco: its train json loaded, slim_*: slim configs over the tiny one)."""
    import paddle

    import ppdet_lite
    from ppdet_lite.data.builder import build_dataset

    root = str(tmp_path_factory.mktemp("hardening"))
    cfg_path = write_yaml(os.path.join(root, "tiny.yml"), tiny_yaml(root))
    cfg = ppdet_lite.load_config(cfg_path)
    for name in ("TrainDataset", "EvalDataset"):
        ds = build_dataset(cfg, name)
        ds.check_or_download_dataset()
        ds.parse_dataset()
    paddle.seed(0)
    weights = os.path.join(root, "tiny.pdparams")
    paddle.save(ppdet_lite.build_model(cfg).state_dict(), weights)
    other = ppdet_lite.load_config(os.path.join(ROOT, "configs", "yolov4_tiny_shapes.yml"))
    other_weights = os.path.join(root, "yolov4_tiny.pdparams")
    paddle.save(ppdet_lite.build_model(other).state_dict(), other_weights)
    cfg_path = write_yaml(cfg_path, tiny_yaml(root, weights=weights))
    data = os.path.join(root, "shapes")
    with open(os.path.join(data, "annotations", "instances_train.json")) as f:
        coco = json.load(f)
    image = os.path.join(data, "train", coco["images"][0]["file_name"])
    slim = {}
    for kind, rel, extra in (("qat", "quant/ppyolo_tiny_shapes_qat.yml", {"pretrain_weights": weights, "epoch": 1}),
                             ("ptq", "post_quant/ppyolo_tiny_shapes_ptq.yml", {"weights": weights})):
        doc = {"_BASE_": [os.path.join(ROOT, "configs", "slim", rel)], **extra}
        slim[kind] = write_yaml(os.path.join(root, f"slim_{kind}.yml"), doc)
    slim["distill"] = write_yaml(os.path.join(root, "slim_distill.yml"), {  # the teacher: the tiny model
        "_BASE_": [cfg_path], "pretrain_weights": weights, "slim": "DistillPrune",
        "distill_loss": "DistillYOLOv3Loss", "DistillYOLOv3Loss": {"weight": 100},
        "Pruner": {"criterion": "fpgm", "pruned_params": ["neck.yolo_block.0.tip"], "pruned_ratios": [0.5]},
        "epoch": 1})
    return SimpleNamespace(root=root, cfg=cfg_path, weights=weights, other_weights=other_weights, image=image,
                           data=data, coco=coco, slim_qat=slim["qat"], slim_ptq=slim["ptq"],
                           slim_distill=slim["distill"])


@pytest.fixture(scope="session")
def finished_run(ws, tmp_path_factory):
    """A finished 1-epoch run of the tiny config: namespace(save_dir, cfg, final: model_final prefix)."""
    import ppdet_lite
    from ppdet_lite.engine.trainer import Trainer

    root = str(tmp_path_factory.mktemp("finished"))
    cfg_path = write_yaml(os.path.join(root, "run.yml"), tiny_yaml(ws.root, save_dir=os.path.join(root, "output")))
    trainer = Trainer(ppdet_lite.load_config(cfg_path), mode="train", seed=0)
    trainer.train()
    return SimpleNamespace(save_dir=trainer.save_dir, cfg=cfg_path,
                           final=os.path.join(trainer.save_dir, "model_final"))


@pytest.fixture(scope="session")
def model_dir(ws, tmp_path_factory):
    """The tiny model exported for deployment (64 px input)."""
    import paddle

    import ppdet_lite
    from ppdet_lite.engine.checkpoint import load_weights
    from ppdet_lite.export.jit import export_model

    cfg = ppdet_lite.load_config(ws.cfg, ["TestReader.inputs_def.image_shape=[3,64,64]"])
    model = ppdet_lite.build_model(cfg)
    load_weights(model, ws.weights)
    out = export_model(cfg, str(tmp_path_factory.mktemp("exported")), model=model)
    paddle.set_device("cpu")
    return out


@pytest.fixture
def broken_model_dir(model_dir, tmp_path):
    """``broken_model_dir(edit)``: a copy of the exported model dir after ``edit(dir)``."""
    def make(edit):
        d = str(tmp_path / "model")
        shutil.copytree(model_dir, d)
        edit(d)
        return d
    return make


FAST_SHARE = 24  # -m "not slow" runs one case in this many (a stable cross-section of every family)


def pytest_collection_modifyitems(items):
    """The corpus is hundreds of sub-second cases (about a minute together): all but a stable sample
    of them count as slow, so ``-m "not slow"`` stays within its budget and still touches every
    family. The script runs (test_processes.py) and the training stops (test_training.py) are marked
    where they are."""
    import zlib

    for item in items:
        if "tests/hardening/" not in item.nodeid or item.module.__name__.endswith(("test_processes", "test_training")):
            continue
        if item.get_closest_marker("slow") is None and zlib.crc32(item.nodeid.encode()) % FAST_SHARE:
            item.add_marker(pytest.mark.slow)

"""Broken images (truncated JPEG or PNG, 0 bytes, text or random bytes named .jpg, a directory named
.jpg, a missing path) in training and evaluation data and as inference inputs: one ``error:`` line
naming the file, never trained on or evaluated silently."""
import copy
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from .conftest import tiny_yaml, write_yaml
from .helpers import base_args, refused, run_tool


def make_image(kind: str, path: str, good: str) -> None:
    """Write a broken image of ``kind`` at ``path`` (``good``: a valid JPEG to cut)."""
    data = open(good, "rb").read()
    if kind == "truncated_jpeg":
        out = data[: int(len(data) * 0.6)]
    elif kind == "truncated_jpeg_tail":  # only the end-of-image marker is missing
        out = data[:-2]
    elif kind == "zero_byte":
        out = b""
    elif kind == "text":
        out = b"<html>404 Not Found</html>\n"
    elif kind == "random":
        out = np.random.RandomState(0).bytes(2000)
    elif kind == "jpeg_header_only":
        out = data[:200]
    elif kind == "truncated_png":
        ok, png = cv2.imencode(".png", cv2.imread(good))
        out = png.tobytes()[: int(png.size * 0.5)]
    elif kind == "directory":
        os.makedirs(path)
        return
    else:
        raise ValueError(kind)
    with open(path, "wb") as f:
        f.write(out)


KINDS = ["truncated_jpeg", "truncated_jpeg_tail", "zero_byte", "text", "random", "jpeg_header_only",
         "truncated_png", "directory"]


def dataset_config(ws, tmp_path, kind) -> str:
    """A COCO copy of the train images, the first one broken; it is both Train and EvalDataset."""
    d = tmp_path / "coco"
    shutil.copytree(os.path.join(ws.data, "train"), d / "train")
    coco = copy.deepcopy(ws.coco)
    first = str(d / "train" / coco["images"][0]["file_name"])
    os.remove(first)
    make_image(kind, first, os.path.join(ws.data, "train", coco["images"][0]["file_name"]))
    (d / "ann.json").write_text(json.dumps(coco))
    section = {"name": "COCODataSet", "dataset_dir": str(d), "image_dir": "train", "anno_path": "ann.json"}
    doc = tiny_yaml(ws.root, TrainDataset=dict(section, data_fields=["image", "gt_bbox", "gt_class", "is_crowd"]),
                    EvalDataset=section, weights=ws.weights, save_dir=str(tmp_path / "output"),
                    TrainReader={"batch_size": 2, "shuffle": False})
    return write_yaml(str(tmp_path / "coco.yml"), doc), coco["images"][0]["file_name"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tool", ["train", "eval"])
def test_broken_image_in_dataset(tool, kind, ws, tmp_path):
    path, name = dataset_config(ws, tmp_path, kind)
    res = run_tool(tool, base_args(tool, ws, tmp_path, config=path))
    refused(res, name)
    assert "model_final" not in res.out, "[silent] trained through a broken image"


def _bad_input(kind, ws, tmp_path):
    path = str(tmp_path / "in" / ("bad.png" if kind == "truncated_png" else "bad.jpg"))
    os.makedirs(os.path.dirname(path))
    make_image(kind, path, ws.image)
    return path


@pytest.mark.parametrize("kind", KINDS + ["missing"])
def test_broken_infer_img(kind, ws, tmp_path):
    path = str(tmp_path / "nope.jpg") if kind == "missing" else _bad_input(kind, ws, tmp_path)
    res = run_tool("infer", ["-c", ws.cfg, "--infer_img", path, "--output_dir", str(tmp_path / "out")])
    refused(res, path)


@pytest.mark.parametrize("kind", KINDS)
def test_broken_image_in_infer_dir(kind, ws, tmp_path):
    path = _bad_input(kind, ws, tmp_path)
    shutil.copy(ws.image, tmp_path / "in" / "good.jpg")
    res = run_tool("infer", ["-c", ws.cfg, "--infer_dir", str(tmp_path / "in"), "--output_dir", str(tmp_path / "out")])
    if kind == "directory":  # a directory is not listed as an image
        assert res.code == 0, res.err
        return
    refused(res, path)


@pytest.mark.parametrize("kind", KINDS + ["missing"])
def test_broken_deploy_image(kind, ws, model_dir, tmp_path):
    path = str(tmp_path / "nope.jpg") if kind == "missing" else _bad_input(kind, ws, tmp_path)
    res = run_tool("deploy_infer", ["--model_dir", model_dir, "--image_file", path,
                                    "--output_dir", str(tmp_path / "out")])
    refused(res, path)


def test_good_images_still_pass(ws, model_dir, tmp_path):
    """The checks refuse broken files only: the same tools accept the workspace's own images."""
    res = run_tool("infer", ["-c", ws.cfg, "--infer_img", ws.image, "--output_dir", str(tmp_path / "a")])
    assert res.code == 0, res.err
    res = run_tool("deploy_infer", ["--model_dir", model_dir, "--image_file", ws.image,
                                    "--output_dir", str(tmp_path / "b")])
    assert res.code == 0, res.err

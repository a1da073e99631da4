"""Structural mapping: custom-class and custom-anchor cfgs, mismatches named by layer, truncated
files, the converter (auto-detected config) and tools/convert_darknet.py."""
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.darknet.convert import convert, find_config
from ppdet_lite.darknet.mapping import load_darknet_weights, save_darknet
from ppdet_lite.darknet.weights import read_weights, write_weights

from .oracle import ROOT, build, fixture, randomize

TINY = open(fixture("yolov4-tiny")).read()


def _custom_tiny(classes=1, anchors="5,7, 11,13, 30,40, 60,70, 100,110, 200,220"):
    """yolov4-tiny.cfg as a darknet user edits it: classes=, the heads' filters=, anchors=."""
    text = TINY.replace("classes=80", f"classes={classes}").replace(
        "filters=255", f"filters={3 * (classes + 5)}")
    return re.sub(r"anchors = [0-9, ]+", f"anchors = {anchors}", text)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    model = build("yolov4_tiny")
    randomize(model, size=64)
    save_darknet(model, str(d / "ours.cfg"), str(d / "tiny.weights"), 416, 416)
    return model, d


def _state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def test_other_class_count_converts_all_but_heads(tmp_path):
    cfg = tmp_path / "custom.cfg"
    cfg.write_text(_custom_tiny(classes=1, anchors="10,14, 23,27, 37,58, 81,82, 135,169, 344,319"))
    ref = build("yolov4_tiny", overrides={"num_classes": 1})
    randomize(ref, size=64, seed=3)
    weights = str(tmp_path / "custom.weights")
    save_darknet(ref, str(tmp_path / "x.cfg"), weights, 416, 416)
    model = build("yolov4_tiny")  # 80 classes
    before = _state(model)
    info = load_darknet_weights(model, weights, str(cfg))
    assert info["skipped_heads"] == [29, 36] and "1 classes, the model 80" in info["message"]
    after, wanted = _state(model), _state(ref)
    for k in after:
        if k.startswith("yolo_head.yolo_outputs"):
            np.testing.assert_array_equal(after[k], before[k])
        else:
            np.testing.assert_array_equal(after[k], wanted[k])
    with pytest.raises(ConfigError, match="classes=1 in the cfg, 80 in the model"):
        load_darknet_weights(model, weights, str(cfg), allow_class_mismatch=False)


def test_custom_classes_and_anchors_convert_fully(tmp_path):
    cfg = tmp_path / "custom.cfg"
    cfg.write_text(_custom_tiny(classes=1))
    assert find_config(str(cfg)).endswith("yolov4_tiny.yml")
    ref = build("yolov4_tiny", overrides={"num_classes": 1, "YOLOv4Head.anchors": [
        [5, 7], [11, 13], [30, 40], [60, 70], [100, 110], [200, 220]]})
    randomize(ref, size=64, seed=4)
    weights = str(tmp_path / "custom.weights")
    save_darknet(ref, str(tmp_path / "x.cfg"), weights, 416, 416)
    model, config, info = convert(str(cfg), weights)
    assert info["skipped_heads"] == [] and config["num_classes"] == 1
    assert model.yolo_head.anchors == [[[60, 70], [100, 110], [200, 220]],
                                       [[11, 13], [30, 40], [60, 70]]]
    got, wanted = _state(model), _state(ref)
    assert all(np.array_equal(got[k], wanted[k]) for k in wanted)


def test_published_custom_cfg_is_accepted(tiny_files):
    """yolov4-tiny-custom.cfg (masks 0,1,2 on the second head) converts with its own masks."""
    _, d = tiny_files
    model, _, info = convert(fixture("yolov4-tiny-custom"), str(d / "tiny.weights"))
    assert info["layers"] == 21 and model.yolo_head.anchor_masks == [[3, 4, 5], [0, 1, 2]]


def test_mismatch_names_the_first_differing_layer(tiny_files, tmp_path):
    _, d = tiny_files
    lines = TINY.split("\n")
    # layer 10 is the 11th [convolutional]/[route]/... section: its filters=128 -> 96
    starts = [i for i, l in enumerate(lines) if l.startswith("[")][1:]
    sec = starts[10]
    j = next(i for i in range(sec, len(lines)) if lines[i].startswith("filters="))
    lines[j] = "filters=96"
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("\n".join(lines))
    with pytest.raises(ConfigError) as e:
        load_darknet_weights(build("yolov4_tiny"), str(d / "tiny.weights"), str(cfg))
    msg = str(e.value)
    assert f"layer 10 [convolutional] (line {sec + 1} of {cfg})" in msg
    assert "filters: 96 in the cfg, 128 in the model" in msg
    with pytest.raises(ConfigError, match="matches none of the YOLOv4 configs"):
        find_config(str(cfg))


def test_truncated_and_oversized_weights(tiny_files, tmp_path):
    _, d = tiny_files
    wf = read_weights(str(d / "tiny.weights"))
    short, long = str(tmp_path / "short.weights"), str(tmp_path / "long.weights")
    write_weights(short, [wf.data[:-10]])
    write_weights(long, [wf.data, np.zeros(3, "float32")])
    with pytest.raises(ConfigError, match=r"ends inside layer 36 \[convolutional\]"):
        load_darknet_weights(build("yolov4_tiny"), short, fixture("yolov4-tiny"))
    with pytest.raises(ConfigError, match="3 floats left after the last layer"):
        load_darknet_weights(build("yolov4_tiny"), long, fixture("yolov4-tiny"))


def test_convert_tool(tiny_files, tmp_path):
    model, d = tiny_files
    out = str(tmp_path / "tiny.pdparams")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_darknet.py"),
                           "--cfg", fixture("yolov4-tiny"), "--weights",
                           str(d / "tiny.weights"), "-o", out, "-c",
                           os.path.join(ROOT, "configs", "yolov4_tiny.yml")],
                          capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "loaded 21 conv layers" in proc.stdout and "yolov4_tiny.yml" in proc.stdout
    state = paddle.load(out)
    want = _state(model)
    assert set(state) == set(want)
    assert all(np.array_equal(state[k].numpy(), want[k]) for k in want)
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_darknet.py"),
                          "--cfg", fixture("yolov4-tiny"), "--weights", out, "-o", out + "2",
                          "-c", os.path.join(ROOT, "configs", "yolov4_tiny.yml")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_export_tool_round_trip(tiny_files, tmp_path):
    """ours (.pdparams) -> tools/export_darknet.py -> .cfg/.weights -> OpenCV == ours."""
    cv2 = pytest.importorskip("cv2")
    model, _ = tiny_files
    params = str(tmp_path / "m.pdparams")
    paddle.save(model.state_dict(), params)
    cfg, weights = str(tmp_path / "m.cfg"), str(tmp_path / "m.weights")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "export_darknet.py"),
                           "-c", os.path.join(ROOT, "configs", "yolov4_tiny.yml"),
                           "--weights", params, "--cfg", cfg, "-o", weights, "--size", "64"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    img = np.random.RandomState(0).uniform(0, 1, (1, 3, 64, 64)).astype("float32")
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.setInput(img)
    out = net.forward("conv_36")  # the last output conv (linear)
    with paddle.no_grad():
        ours = model.yolo_head(model.neck(model.backbone({"image": paddle.to_tensor(img)})))
    assert np.abs(out - ours[1].numpy()).max() <= 1e-4


def test_the_package_facade_loads_darknet_weights(tiny_files):
    model, d = tiny_files
    fresh = build("yolov4_tiny")
    ppdet_lite.load_weights(fresh, str(d / "tiny.weights"), darknet_cfg=str(d / "ours.cfg"))
    for key, value in _state(model).items():
        np.testing.assert_array_equal(_state(fresh)[key], value)

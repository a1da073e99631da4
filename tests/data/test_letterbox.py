"""LetterBoxResize: darknet's geometry (scale, centred padding, box mapping), the boxes the YOLO
decodes map back to the original image, the training op = the runtime op (and what
``infer_cfg.yml`` describes), and bad arguments named."""
import copy

import cv2
import numpy as np
import paddle
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.core.registry import create
from ppdet_lite.data.loader import Compose, build_ops as train_ops
from ppdet_lite.data.transforms_geometry import LetterBoxResize
from ppdet_lite.export.infer_cfg import preprocess_list
from ppdet_lite.modeling.post_process import YOLOBox
from ppdet_lite.modeling.yolov4_box import YOLOv4Box
from ppdet_lite.runtime import preprocess as rt

TARGET = [96, 128]  # h, w
# (h, w) -> (nh, nw, top, left): width-limited, width-limited with an odd padding (9 + 10),
# height-limited; darknet: the other side is side * target // limiting side
LAYOUTS = {(90, 160): (72, 128, 12, 0), (97, 160): (77, 128, 9, 0), (120, 100): (96, 80, 0, 24)}


def _sample(h, w, seed=0):
    rng = np.random.default_rng(seed)
    im = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (5, 5), 2)
    box = np.array([[0.1 * w, 0.2 * h, 0.45 * w, 0.9 * h], [0.5 * w, 0.05 * h, 0.93 * w, 0.5 * h],
                    [0.3 * w, 0.4 * h, 0.6 * w, 0.7 * h]], np.float32)
    return {"image": im, "gt_bbox": box, "gt_class": np.array([[0], [1], [0]], np.int32),
            "im_shape": np.array([h, w], np.float32), "scale_factor": np.ones(2, np.float32)}


@pytest.mark.parametrize("hw", list(LAYOUTS))
def test_geometry_scale_padding_and_boxes(hw):
    h, w = hw
    nh, nw, top, left = LAYOUTS[hw]
    s = _sample(h, w)
    s["scale_factor"] = np.array([2.0, 2.0], np.float32)  # an earlier resize: scales multiply
    out = LetterBoxResize(TARGET, fill_value=[0, 114, 255])(copy.deepcopy(s))
    im = out["image"]
    assert im.shape == (96, 128, 3) and im.dtype == np.float32
    np.testing.assert_array_equal(im[top:top + nh, left:left + nw],
                                  cv2.resize(s["image"], (nw, nh), interpolation=cv2.INTER_LINEAR))
    pad = np.ones(im.shape[:2], bool)
    pad[top:top + nh, left:left + nw] = False
    assert pad.sum() == 96 * 128 - nh * nw
    np.testing.assert_array_equal(im[pad], np.broadcast_to([0, 114, 255], (pad.sum(), 3)))
    np.testing.assert_array_equal(out["im_shape"], [nh, nw])
    np.testing.assert_allclose(out["scale_factor"], [2 * nh / h, 2 * nw / w], rtol=1e-6)
    sx, sy = nw / w, nh / h
    np.testing.assert_allclose(out["gt_bbox"], s["gt_bbox"] * [sx, sy, sx, sy] + [left, top] * 2,
                               rtol=1e-5)
    np.testing.assert_array_equal(out["gt_class"], s["gt_class"])


def test_default_fill_is_darknet_grey_and_boxes_clip_to_the_content():
    s = _sample(90, 160)
    s["gt_bbox"] = np.array([[-5, -5, 170, 100]], np.float32)  # past the image on every side
    s["gt_class"] = s["gt_class"][:1]
    out = LetterBoxResize(TARGET)(s)
    assert (out["image"][:12] == 127).all() and (out["image"][-12:] == 127).all()
    np.testing.assert_allclose(out["gt_bbox"], [[0, 12, 128, 84]])


def _v4_maps(gt_in, stride, anchor, grid_hw):
    """One-anchor, one-class ``new_coords`` maps [N, 6, gh, gw] (already σ'd) that decode to the
    input-pixel boxes ``gt_in`` [N, K, 4]; returns (maps, row of each box)."""
    n, k = gt_in.shape[:2]
    maps = np.zeros((n, 6, *grid_hw), np.float32)
    rows = np.zeros((n, k), np.int64)
    for i in range(n):
        for j, (x1, y1, x2, y2) in enumerate(gt_in[i]):
            cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
            col, row = int(cx), int(cy)
            maps[i, :, row, col] = [cx - col, cy - row, np.sqrt((x2 - x1) / (4 * anchor[0])),
                                    np.sqrt((y2 - y1) / (4 * anchor[1])), 0.9, 0.9]
            rows[i, j] = row * grid_hw[1] + col
    return maps, rows


def _yolo_box_maps(gt_in, stride, anchor, grid_hw):
    """Raw (logit) one-anchor, one-class maps that ``yolo_box`` decodes to ``gt_in``."""
    maps, rows = _v4_maps(gt_in, stride, anchor, grid_hw)
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    wh_over_anchor = np.maximum(4 * maps[:, 2:4] ** 2, 1e-6)  # exp(tw) = box w / anchor w
    raw = np.concatenate([logit(np.clip(maps[:, :2], 1e-6, 1 - 1e-6)), np.log(wh_over_anchor),
                          logit(np.clip(maps[:, 4:], 1e-6, 0.9))], 1)
    return raw.astype(np.float32), rows


@pytest.mark.parametrize("decode", ["YOLOv4Box", "YOLOBox"])
def test_decode_maps_letterboxed_boxes_back_to_the_original(decode):
    """Original boxes -> LetterBoxResize -> head maps that encode them at the network input ->
    the decode with (im_shape, scale_factor) from the op and the input size -> original boxes.
    A box past the canvas on every side (over the padding) comes back clipped to the image."""
    stride, anchor = 16, [30, 40]
    samples = [LetterBoxResize(TARGET)(_sample(*hw, seed=i)) for i, hw in enumerate(LAYOUTS)]
    canvas = [[-8, -8, TARGET[1] + 8, TARGET[0] + 8]]
    gt_in = np.stack([np.concatenate([s["gt_bbox"], canvas]) for s in samples])
    want = np.stack([np.concatenate([_sample(h, w)["gt_bbox"], [[0, 0, w - 1, h - 1]]])
                     for h, w in LAYOUTS])
    grid = (TARGET[0] // stride, TARGET[1] // stride)
    im_shape = paddle.to_tensor(np.stack([s["im_shape"] for s in samples]))
    scale = paddle.to_tensor(np.stack([s["scale_factor"] for s in samples]))
    size = paddle.to_tensor(TARGET, "int32")
    if decode == "YOLOv4Box":
        maps, rows = _v4_maps(gt_in, stride, anchor, grid)
        boxes, scores = YOLOv4Box(conf_thresh=0.5)(
            [paddle.to_tensor(maps)], [dict(anchors=[anchor], scale_x_y=1.0, new_coords=True)],
            im_shape, scale, size)
    else:
        maps, rows = _yolo_box_maps(gt_in, stride, anchor, grid)
        boxes, scores = YOLOBox(num_classes=1, conf_thresh=0.5, downsample_ratio=stride)(
            [paddle.to_tensor(maps)], [anchor], im_shape, scale, size)
    boxes, scores = boxes.numpy(), scores.numpy()
    got = np.stack([boxes[i, rows[i]] for i in range(len(samples))])
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
    assert (np.take_along_axis(scores[:, 0], rows, 1) > 0.5).all()
    # without the input size the decode takes the content for the whole input: boxes are off
    plain = (YOLOv4Box(conf_thresh=0.5)([paddle.to_tensor(maps)], [dict(
        anchors=[anchor], scale_x_y=1.0, new_coords=True)], im_shape, scale)
        if decode == "YOLOv4Box" else YOLOBox(num_classes=1, conf_thresh=0.5,
                                              downsample_ratio=stride)(
            [paddle.to_tensor(maps)], [anchor], im_shape, scale))[0].numpy()
    assert np.abs(np.stack([plain[i, rows[i]] for i in range(3)])[:, :3] - want[:, :3]).max() > 5


@pytest.mark.parametrize("decode", ["YOLOv4Box", "YOLOBox"])
def test_decode_without_padding_is_bit_identical(decode):
    """input == im_shape (every Resize config): the letterbox-aware decode = the plain one."""
    rng = np.random.default_rng(1)
    maps = [paddle.to_tensor(rng.normal(0, 2, (2, 3 * 7, g, g)).astype("float32")) for g in (3, 6)]
    anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]]
    im_shape = paddle.to_tensor([[96., 96.], [96., 96.]])
    scale = paddle.to_tensor([[0.25, 0.4], [1.0, 3.0]])
    if decode == "YOLOv4Box":
        dec = YOLOv4Box()
        anchors = [dict(anchors=[a[i:i + 2] for i in (0, 2, 4)], scale_x_y=1.05, new_coords=False)
                   for a in anchors]
    else:
        dec = YOLOBox(num_classes=2, downsample_ratio=32, scale_x_y=1.05)
    a, b = dec(maps, anchors, im_shape, scale), dec(maps, anchors, im_shape, scale,
                                                    paddle.to_tensor([96, 96], "int32"))
    assert np.array_equal(a[0].numpy(), b[0].numpy()) and np.array_equal(a[1].numpy(), b[1].numpy())


MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
READER = {"sample_transforms": [{"Decode": {}},
                                {"LetterBoxResize": {"target_size": [64, 64], "fill_value": 127}},
                                {"NormalizeImage": {"mean": MEAN, "std": STD, "is_scale": True}},
                                {"Permute": {}}]}


@pytest.mark.parametrize("fill", [127, [127.5, 114, 0]])
def test_training_op_equals_runtime_op_and_infer_cfg(fill, tmp_path):
    """The reader's transforms and the deploy ops built from what infer_cfg.yml writes (fused and
    not) give the same CHW image, im_shape and scale_factor, bit for bit."""
    reader = copy.deepcopy(READER)
    reader["sample_transforms"][1]["LetterBoxResize"]["fill_value"] = fill
    cfg = {"TestReader": dict(reader, inputs_def={"image_shape": [3, 96, 128]})}
    # the export's fixed input size becomes the letterbox's target, as for Resize
    entries = preprocess_list(cfg, [None, 3, 96, 128])
    assert entries[0] == {"type": "LetterBoxResize", "target_size": [96, 128], "fill_value": fill}
    reader["sample_transforms"][1]["LetterBoxResize"]["target_size"] = [96, 128]
    train = Compose(train_ops(reader["sample_transforms"], 1, "TestReader"), "TestReader")
    path = str(tmp_path / "a.png")
    for hw in LAYOUTS:
        cv2.imwrite(path, _sample(*hw)["image"])
        ours = train({"im_file": path, "im_id": np.array([0])})
        for fuse in (True, False):
            im, info = rt.preprocess(path, rt.build_ops(entries, fuse=fuse))
            assert im.dtype == np.float32 and np.array_equal(im, ours["image"]), (hw, fuse)
            for key in ("im_shape", "scale_factor"):
                assert np.array_equal(info[key], ours[key]), (hw, fuse, key)


def test_bad_arguments_name_the_key():
    for kwargs, key in (({"target_size": [0, 64]}, "target_size"),
                        ({"target_size": 64.5}, "target_size"),
                        ({"target_size": 64, "fill_value": 300}, "fill_value"),
                        ({"target_size": 64, "fill_value": [1, 2]}, "fill_value"),
                        ({"target_size": 64, "interp": 9}, "interp")):
        with pytest.raises(ConfigError, match=key):
            LetterBoxResize(**kwargs)
        with pytest.raises(ConfigError, match=key):
            rt.build_ops([{"type": "LetterBoxResize", **kwargs}])
    with pytest.raises(ConfigError, match="target_size"):
        create("LetterBoxResize", {"target_sise": 64}, where="TrainReader.sample_transforms[1]")

"""Our YOLOv4 models vs OpenCV's DNN (cv2.dnn.readNetFromDarknet) on the same darknet files.

Per model: BN-calibrated random weights are written as .weights (``save_darknet``); OpenCV reads
them with AlexeyAB's published cfg (unchanged) and with the cfg we write (round trip). Compared,
at two input sizes: every conv layer's output (after its activation), the [yolo] outputs
(boxes, objectness, obj·cls) and our decoded boxes (``YOLOv4Box``); then the .weights loaded
into a fresh model give identical outputs.

OpenCV 4.6 quirks handled here: class scores under 0.2 are zeroed in its [yolo] output (checked
as "ours < 0.2 there"); with new_coords=1 its objectness column is not meaningful, the logistic
conv blob (compared per layer) and the class columns carry that information.
"""

import numpy as np
import paddle
import pytest

from ppdet_lite.darknet.graph import describe
from ppdet_lite.darknet.mapping import load_darknet_weights, save_darknet
from ppdet_lite.modeling.yolov4_box import YOLOv4Box, decode_level

from .oracle import MODELS, build, fixture, opencv_outputs, our_layer_outputs, randomize

cv2 = pytest.importorskip("cv2")

TOL = 1e-4
# tiny runs in the fast tier (2 s); the others take 10-15 s each on 2 cores
CASES = ["yolov4_tiny"] + [pytest.param(name, marks=pytest.mark.slow)
                           for name in ("yolov4_csp", "yolov4_cspdarknet53", "yolov4_p5")]
SIZES = (64, 96)


def _opencv_rows(h: np.ndarray, level: dict, size: int):
    """Our decode of one head map in OpenCV's row order (row, col, anchor):
    (cxcywh [R,4], obj [R], obj·cls [R,nc])."""
    box, obj, cls = decode_level(paddle.to_tensor(h), level["anchors"], level["scale_x_y"],
                                 level["new_coords"], paddle.to_tensor([[size * 1., size * 1.]]))
    nc = cls.shape[-1]
    box = box.numpy()[0].transpose(1, 0, 2).reshape(-1, 4)
    obj = obj.numpy()[0].transpose(1, 0, 2).reshape(-1)
    cls = cls.numpy()[0].transpose(1, 0, 2).reshape(-1, nc)
    return box, obj, obj[:, None] * cls


def _check(name, model, cfg_path, weights, size, report):
    img = np.random.RandomState(size).uniform(0, 1, (1, 3, size, size)).astype("float32")
    ours, heads = our_layer_outputs(model, img)
    g = describe(model)
    yolo_layers = [lay.index for lay in g.layers if lay.type == "yolo"]
    conv, yolo, _ = opencv_outputs(cfg_path, weights, img, sorted(ours), yolo_layers)
    worst = max(float(np.abs(ours[i] - conv[i]).max()) for i in ours)
    assert worst <= TOL, f"{name} @{size}: conv outputs differ by {worst:.2e}"
    # our head k for each [yolo] layer (darknet's order differs per cfg): the same grid
    head_of = {lay: next(k for k, h in enumerate(heads) if h.shape[2] == g_hw)
               for lay, g_hw in ((lay, int(round((yolo[lay].shape[0] / len(
                   g.layers[lay].attrs["mask"])) ** 0.5))) for lay in yolo_layers)}
    box_diff = score_diff = 0.
    for lay, k in head_of.items():
        level = model.yolo_head.levels[k]
        assert g.layers[lay].attrs["anchors"] == [[float(v) for v in a] for a in level["anchors"]]
        box, obj, score = _opencv_rows(heads[k], level, size)
        cv = yolo[lay]
        assert cv.shape == (box.shape[0], 5 + score.shape[1])
        box_diff = max(box_diff, float(np.abs(box - cv[:, :4]).max()))
        if not level["new_coords"]:
            score_diff = max(score_diff, float(np.abs(obj - cv[:, 4]).max()))
        kept = cv[:, 5:] > 0
        assert kept.any() and (~kept).any()
        score_diff = max(score_diff, float(np.abs(score - cv[:, 5:])[kept].max()))
        assert score[~kept].max() < 0.2 + TOL, "OpenCV zeroed a score of 0.2 or more"
    assert box_diff <= TOL and score_diff <= TOL, (name, size, box_diff, score_diff)
    report.append((name, size, worst, box_diff, score_diff))
    return img, yolo, head_of


@pytest.mark.parametrize("name", CASES)
def test_matches_opencv_dnn(name, tmp_path):
    model = build(name)
    randomize(model)
    cfg, weights = str(tmp_path / "ours.cfg"), str(tmp_path / "ours.weights")
    save_darknet(model, cfg, weights, 416, 416)
    report = []
    for size in SIZES:
        for cfg_path in (fixture(MODELS[name]), cfg):  # published cfg, then our own
            img, yolo, head_of = _check(name, model, cfg_path, weights, size, report)
        # decoded boxes in pixels (YOLOv4Box) equal OpenCV's boxes
        model.exclude_nms = True
        with paddle.no_grad():
            out = model({"image": paddle.to_tensor(img),
                         "im_shape": paddle.to_tensor([[size * 1., size * 1.]]),
                         "scale_factor": paddle.to_tensor([[1., 1.]])})
        model.exclude_nms = False
        rows, start = [], 0
        for k in range(len(head_of)):
            lay = next(lay for lay, kk in head_of.items() if kk == k)
            cv = yolo[lay]
            na = len(model.yolo_head.levels[k]["anchors"])
            hw = cv.shape[0] // na
            cx = cv[:, :4].reshape(hw, na, 4).transpose(1, 0, 2).reshape(-1, 4) * size
            rows.append(np.concatenate([cx[:, :2] - cx[:, 2:] / 2, cx[:, :2] + cx[:, 2:] / 2], 1))
            start += cv.shape[0]
        ref = np.clip(np.concatenate(rows), 0, size - 1)
        assert out["boxes"].shape == [1, start, 4]
        assert np.abs(out["boxes"].numpy()[0] - ref).max() <= TOL * size
    # the .weights read back (published cfg) give a fresh model the same outputs, exactly
    fresh = build(name)
    info = load_darknet_weights(fresh, weights, fixture(MODELS[name]))
    assert info["skipped_heads"] == [] and info["version"] == (0, 2, 5)
    img = np.random.RandomState(7).uniform(0, 1, (1, 3, 64, 64)).astype("float32")
    a, _ = our_layer_outputs(model, img)
    b, _ = our_layer_outputs(fresh, img)
    assert all(np.array_equal(a[i], b[i]) for i in a)
    for r in report:
        print("%s @%d: conv max abs %.2e, yolo boxes %.2e, scores %.2e" % r)

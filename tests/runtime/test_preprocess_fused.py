"""The runtimes' fused preprocessing (``build_ops(fuse=True)``) equals the plain op chain bit for bit."""
import cv2
import numpy as np
import pytest

from ppdet_lite.runtime.preprocess import NormalizePermute, Resize, batch_inputs, build_ops, preprocess

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def chain(resize, extra=()):
    return [{"type": "Resize", **resize}, {"type": "NormalizeImage", "mean": MEAN, "std": STD,
                                           "is_scale": True}, {"type": "Permute"}, *extra]


@pytest.mark.parametrize("cfg", [
    chain({"target_size": [416, 416], "keep_ratio": False, "interp": 2}),
    chain({"target_size": [320, 320], "keep_ratio": False, "interp": 1}),
    chain({"target_size": [512, 608], "keep_ratio": True, "interp": 1},
          [{"type": "PadStride", "stride": 32}]),
    [{"type": "Resize", "target_size": 96, "keep_ratio": False},
     {"type": "NormalizeImage", "mean": [0, 0, 0], "std": [1, 1, 1], "is_scale": True,
      "norm_type": "none"}, {"type": "Permute"}],
    [{"type": "LetterBoxResize", "target_size": [416, 416]},
     *chain({"target_size": 1})[1:]],
    [{"type": "LetterBoxResize", "target_size": [320, 416], "fill_value": [127.5, 114, 0]},
     *chain({"target_size": 1})[1:]],
])
@pytest.mark.parametrize("shape", [(576, 768), (37, 53), (700, 300)])
def test_fused_equals_chain(cfg, shape, tmp_path):
    rng = np.random.RandomState(shape[0])
    im = cv2.GaussianBlur(rng.randint(0, 256, (*shape, 3)).astype(np.uint8), (5, 5), 2)
    path = str(tmp_path / "a.jpg")
    cv2.imwrite(path, im)
    fused, plain = build_ops(cfg), build_ops(cfg, fuse=False)
    assert any(isinstance(op, NormalizePermute) for op in fused)
    assert not any(isinstance(op, NormalizePermute) for op in plain)
    for source in (path, im[:, :, ::-1].copy()):
        (a, ia), (b, ib) = preprocess(source, fused), preprocess(source, plain)
        assert a.dtype == b.dtype == np.float32 and a.flags.c_contiguous
        assert np.array_equal(a, b)
        assert all(np.array_equal(ia[k], ib[k]) for k in ("im_shape", "scale_factor"))
        one, two = batch_inputs([a], [ia]), batch_inputs([b, b], [ib, ib])
        assert np.array_equal(one["image"][0], two["image"][1]) and one["image"].flags.c_contiguous


def test_resize_alone_still_gives_float32():
    """Only a Resize feeding a normalisation keeps uint8 (training transforms and Resize-last
    chains see float32 as before)."""
    (op,) = build_ops([{"type": "Resize", "target_size": 64, "keep_ratio": False}])
    out, _ = op(np.zeros((10, 20, 3), np.uint8), {})
    assert out.dtype == np.float32 and Resize(64).to_float


def test_letterbox_before_a_normalisation_keeps_uint8():
    """As Resize: the canvas stays uint8 when the fill fits (127), float32 when it does not."""
    for fill, dtype in ((127, np.uint8), (127.5, np.float32)):
        ops = build_ops([{"type": "LetterBoxResize", "target_size": 64, "fill_value": fill},
                         *chain({"target_size": 1})[1:]])
        out, _ = ops[0](np.zeros((10, 20, 3), np.uint8), {})
        assert out.dtype == dtype and out.shape == (64, 64, 3)
    (op,) = build_ops([{"type": "LetterBoxResize", "target_size": 64}])
    assert op(np.zeros((10, 20, 3), np.uint8), {})[0].dtype == np.float32

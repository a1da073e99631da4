"""RandomHSV (darknet's hue / saturation / exposure): identity settings, the drawn ranges, the
direction statistics move in for a fixed seed, uint8 = float input, and bad arguments named."""
import copy

import cv2
import numpy as np
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.data.loader import build_ops
from ppdet_lite.data.transforms import RandomHSV


def _sample(seed=0, h=48, w=64):
    rng = np.random.default_rng(seed)
    im = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3)).astype(np.uint8), (7, 7), 3)
    im = cv2.normalize(im, None, 20, 235, cv2.NORM_MINMAX)  # colourful, not saturated
    return {"image": im, "gt_bbox": np.array([[1, 2, 30, 40]], np.float32)}


def _hsv(im):
    """float32 HSV of a 0..255 RGB image: H degrees, S and V in [0, 1]."""
    return cv2.cvtColor(np.asarray(im, np.float32) / 255, cv2.COLOR_RGB2HSV)


def _draws(seed, op):
    """(dhue, dsat, dexp) that ``op`` draws after ``np.random.seed(seed)``: darknet's order."""
    np.random.seed(seed)
    return np.random.uniform(-op.hue, op.hue), op.rand_scale(op.saturation), \
        op.rand_scale(op.exposure)


def test_zero_settings_are_identity():
    s = _sample()
    np.random.seed(0)
    out = RandomHSV(hue=0, saturation=1, exposure=1)(copy.deepcopy(s))
    assert out["image"].dtype == np.float32
    np.testing.assert_array_equal(out["image"], s["image"])
    np.testing.assert_array_equal(out["gt_bbox"], s["gt_bbox"])
    # through the HSV round trip (a hue shift of 1e-7 of the circle): identity up to rounding
    out = RandomHSV(hue=1e-7, saturation=1, exposure=1)(copy.deepcopy(s))
    np.testing.assert_allclose(out["image"], s["image"], atol=1e-2)


def test_uint8_and_float_input_agree_and_output_stays_in_range():
    s = _sample(1)
    op = RandomHSV(hue=0.3, saturation=3, exposure=3)
    for seed in range(5):
        np.random.seed(seed)
        a = op(copy.deepcopy(s))["image"]
        np.random.seed(seed)
        b = op(dict(s, image=s["image"].astype(np.float32)))["image"]
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b)
        assert a.min() >= 0 and a.max() <= 255
    # float input past 0..255 (an unclipped RandomDistort before) is clipped first
    over = s["image"].astype(np.float32) * 2 - 100
    np.random.seed(0)
    out = op(dict(s, image=over))["image"]
    np.random.seed(0)
    assert np.array_equal(out, op(dict(s, image=np.clip(over, 0, 255)))["image"])


@pytest.mark.parametrize("key", ["saturation", "exposure"])
def test_scale_factors_lie_in_the_range_and_move_the_channel(key):
    """One channel scaled by f in [1/s, s] (f < 1 and f > 1 both drawn), saturating at 1; the
    others untouched."""
    s = _sample(2)
    op = RandomHSV(hue=0.0, **{"saturation": 1.0, "exposure": 1.0, key: 3.0})
    ch = 1 if key == "saturation" else 2
    before = _hsv(s["image"])
    factors = []
    for seed in range(12):
        want = _draws(seed, op)[ch]
        np.random.seed(seed)
        after = _hsv(op(copy.deepcopy(s))["image"])
        ok = (before[..., ch] > 0.05) & (before[..., ch] * want < 0.95)  # not clipped, H defined
        ratio = np.median(after[..., ch][ok] / before[..., ch][ok])
        assert ratio == pytest.approx(want, rel=2e-2), seed
        assert np.mean(after[..., ch]) > np.mean(before[..., ch]) if want > 1 else \
            np.mean(after[..., ch]) < np.mean(before[..., ch])
        other = 3 - ch  # S for V and V for S
        np.testing.assert_allclose(after[..., other][ok], before[..., other][ok], atol=2e-2)
        # where the channel saturates at 1 (darknet's uint8 HSV) the hue still does not move
        coloured = before[..., 1] > 0.2
        delta = (after[..., 0] - before[..., 0] + 180) % 360 - 180
        assert np.abs(delta[coloured]).max() < 2.0, seed
        factors.append(ratio)
    assert 1 / 3 <= min(factors) < 1 < max(factors) <= 3


@pytest.mark.parametrize("hue", [0.2, 0.5])
def test_hue_shift_is_a_rotation_within_the_range(hue):
    s = _sample(3)
    op = RandomHSV(hue=hue, saturation=1, exposure=1)
    before = _hsv(s["image"])
    ok = before[..., 1] > 0.2  # hue well defined
    shifts = []
    for seed in range(12):
        dhue = _draws(seed, op)[0]
        np.random.seed(seed)
        after = _hsv(op(copy.deepcopy(s))["image"])
        delta = (after[..., 0] - before[..., 0] + 180) % 360 - 180  # signed degrees
        assert np.median(delta[ok]) == pytest.approx(360 * dhue, abs=1.0), seed
        np.testing.assert_allclose(after[..., 1:][ok], before[..., 1:][ok], atol=2e-2)
        shifts.append(dhue)
    assert -hue <= min(shifts) < 0 < max(shifts) <= hue


def test_darknet_rand_scale_and_registry():
    np.random.seed(0)
    f = np.array([RandomHSV.rand_scale(1.5) for _ in range(2000)])
    assert f.min() >= 1 / 1.5 and f.max() <= 1.5 and 0.45 < (f < 1).mean() < 0.55
    np.testing.assert_allclose(np.median(np.log(f[f > 1])), -np.median(np.log(f[f < 1])), rtol=0.1)
    (op,) = build_ops([{"RandomHSV": {"hue": 0.1, "saturation": 1.5, "exposure": 1.5}}], 1,
                      "TrainReader.sample_transforms")
    assert (op.hue, op.saturation, op.exposure) == (0.1, 1.5, 1.5)


def test_bad_arguments_name_the_key():
    for kwargs, key in (({"hue": 0.7}, "hue"), ({"hue": -0.1}, "hue"),
                        ({"saturation": 0.5}, "saturation"), ({"exposure": "1.5"}, "exposure"),
                        ({"exposure": float("nan")}, "exposure"),
                        ({"saturation": float("inf")}, "saturation")):
        with pytest.raises(ConfigError, match=key):
            RandomHSV(**kwargs)
    with pytest.raises(ConfigError, match="exposure"):
        build_ops([{"RandomHSV": {"exposure": "high"}}], 1, "TrainReader.sample_transforms")
    with pytest.raises(ConfigError, match="saturation"):
        build_ops([{"RandomHSV": {"saturaton": 1.5}}], 1, "TrainReader.sample_transforms")

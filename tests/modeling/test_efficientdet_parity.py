"""Parity with effdet 0.4.1 (the side venv of tests/oracles/effdet_env.py, run as a subprocess):
the same random BN-calibrated weights (converted by ``effdet_convert``) and input give the same
backbone levels, BiFPN outputs, class/box maps (1e-4 max abs, float32), anchors, loss
(DetBenchTrain, eval mode) and detections (DetBenchPredict).

One command:  PYTHONPATH=$PWD python -m pytest tests/modeling/test_efficientdet_parity.py
Inputs are 256x256 (batch 2) for D0, D1 and D4 instead of 512/640/1024, to fit 2 shared cores.
Every measured difference is written to output/effdet_parity/<model>_<size>.json.
"""
import json
import os
import time

import numpy as np
import paddle
import pytest

from ppdet_lite.core.config import load_config
from ppdet_lite.modeling import build_model
from ppdet_lite.modeling.effdet_convert import convert_effdet_state_dict
from tests.oracles.effdet_env import oracle_python, run_oracle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = 1e-4
CASES = [("d0", 256), ("d1", 256), ("d4", 256)]
pytestmark = pytest.mark.slow


def _report(name: str, size: int, key: str, value):
    path = os.path.join(ROOT, "output", "effdet_parity", f"{name}_{size}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = json.load(open(path)) if os.path.exists(path) else {}
    data[key] = value
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


def _build(name: str, weights):
    model = build_model(load_config(os.path.join(ROOT, "configs", f"efficientdet_{name}.yml")))
    model.set_state_dict(convert_effdet_state_dict(weights, model))
    model.eval()
    return model


def _maps(model, image: np.ndarray):
    with paddle.no_grad():
        feats = model.backbone({"image": paddle.to_tensor(image)})
        fpn = model.neck(feats)
        cls_outs, box_outs = model.head(fpn)
    out = {}
    for key, maps in (("backbone", feats), ("fpn", fpn), ("cls", cls_outs), ("box", box_outs)):
        for i, t in enumerate(maps):
            out[f"{key}_{i}"] = t.numpy()
    return out, cls_outs, box_outs


@pytest.fixture(scope="module", params=CASES, ids=[f"{n}_{s}" for n, s in CASES])
def case(request, tmp_path_factory):
    name, size = request.param
    python, why = oracle_python()
    if python is None:
        pytest.skip(why)
    out = str(tmp_path_factory.mktemp(f"effdet_{name}"))
    t0 = time.time()
    run_oracle(python, out, f"tf_efficientdet_{name}", size, batch=2, float64=True)
    oracle_s = time.time() - t0
    theirs = dict(np.load(os.path.join(out, "outputs.npz")))
    weights = dict(np.load(os.path.join(out, "weights.npz")))
    t0 = time.time()
    model = _build(name, weights)
    ours, cls_outs, box_outs = _maps(model, theirs["image"])
    ours_s = time.time() - t0
    model64 = _build(name, weights)
    model64.to(dtype="float64")
    ours64, _, _ = _maps(model64, theirs["image"].astype("float64"))
    _report(name, size, "seconds", {"oracle_subprocess": round(oracle_s, 1),
                                    "ours_build_convert_forward": round(ours_s, 1)})
    return dict(name=name, size=size, model=model, theirs=theirs, ours=ours, ours64=ours64,
                weights=weights, cls_outs=cls_outs, box_outs=box_outs, dir=out)


def test_feature_maps_match(case):
    """float32: class/box maps within 1e-4 of effdet's; backbone/BiFPN maps within 1e-4, or,
    where effdet's own float32 run is already further than that from its float64 run (deep
    random nets, O(1) calibrated activations), within 3x that own error. float64: both sides
    agree to 1e-9 (the structure is the same; what is left in float32 is rounding)."""
    theirs, ours, ours64 = case["theirs"], case["ours"], case["ours64"]
    assert len(ours) == 3 + 3 * case["model"].head.anchors.num_levels
    diffs, bad = {}, {}
    for key in ours:
        assert ours[key].shape == theirs[key].shape, key
        d = {"ours_vs_effdet": float(np.abs(ours[key] - theirs[key]).max()),
             "effdet_f32_vs_f64": float(np.abs(theirs[key] - theirs["f64_" + key]).max()),
             "ours_f32_vs_effdet_f64": float(np.abs(ours[key] - theirs["f64_" + key]).max()),
             "ours_f64_vs_effdet_f64": float(np.abs(ours64[key] - theirs["f64_" + key]).max()),
             "max_abs_value": float(np.abs(theirs[key]).max())}
        diffs[key] = d
        limit = TOL if key.startswith(("cls", "box")) else max(TOL, 3 * d["effdet_f32_vs_f64"])
        if d["ours_vs_effdet"] > limit or d["ours_f64_vs_effdet_f64"] > 1e-9:
            bad[key] = d
    _report(case["name"], case["size"], "maps", diffs)
    assert not bad, f"{case['name']}: {bad}"


def test_anchors_match(case):
    theirs = case["theirs"]["anchors"]  # yxyx
    ours = case["model"].head.anchors.boxes((case["size"], case["size"]))
    assert ours.shape == theirs.shape
    diff = float(np.abs(ours - theirs[:, [1, 0, 3, 2]]).max())
    _report(case["name"], case["size"], "anchors_max_abs", diff)
    assert diff < 1e-4


def _targets(theirs):
    """effdet targets (yxyx, 1-based classes, -1 padding) in our layout."""
    boxes = theirs["gt_bbox"][:, :, [1, 0, 3, 2]]
    cls = theirs["gt_cls"].astype("int64") - 1
    cls[theirs["gt_cls"] < 0] = -1
    return boxes, cls[:, :, None]


def test_loss_matches_det_bench_train(case):
    theirs = case["theirs"]
    boxes, cls = _targets(theirs)
    head = case["model"].head
    losses = head.loss(case["cls_outs"], case["box_outs"],
                       {"image": paddle.to_tensor(theirs["image"]), "gt_bbox": boxes,
                        "gt_class": cls}, head.anchors)
    diffs = {k: abs(float(losses[ours]) - float(theirs[k]))
             for k, ours in (("loss", "loss"), ("class_loss", "loss_cls"), ("box_loss", "loss_box"))}
    _report(case["name"], case["size"], "loss",
            {"effdet": {k: float(theirs[k]) for k in diffs},
             "ours": {k: float(v) for k, v in losses.items()}, "abs_diff": diffs})
    assert max(diffs.values()) < TOL, diffs


def test_detections_match_det_bench_predict(case):
    theirs = case["theirs"]
    model = case["model"]
    n, size = theirs["image"].shape[0], case["size"]
    scale = 1. / theirs["img_scale"]
    bbox, bbox_num = model.post_process(
        case["cls_outs"], case["box_outs"], model.head.anchors.boxes((size, size)),
        paddle.to_tensor(np.stack([scale, scale], 1).astype("float32")),
        paddle.to_tensor((theirs["img_size"] / theirs["img_scale"][:, None]).astype("float32")))
    bbox, bbox_num = bbox.numpy(), bbox_num.numpy()
    start, report = 0, []
    for i in range(n):
        ref = theirs["detections"][i]
        ref = ref[ref[:, 4] > 0]  # rows (x1, y1, x2, y2, score, class + 1), zero padded
        got = bbox[start:start + bbox_num[i]]  # rows (class, score, x1, y1, x2, y2)
        start += bbox_num[i]
        assert len(got) == len(ref), (i, len(got), len(ref))
        # as sets: near-equal scores may swap places, so pair each reference row with the
        # closest unused row of the same class
        used = np.zeros(len(got), bool)
        box_diff = score_diff = 0.
        for row in ref:
            cand = np.where(~used & (got[:, 0] + 1 == row[5]))[0]
            assert len(cand), f"image {i}: no detection of class {row[5] - 1} left for {row}"
            d = np.abs(got[cand, 2:] - row[:4]).max(1)
            j = cand[d.argmin()]
            used[j] = True
            box_diff = max(box_diff, float(d.min()))
            score_diff = max(score_diff, float(abs(got[j, 1] - row[4])))
        report.append({"detections": int(len(got)), "score_max_abs": score_diff,
                       "box_max_abs_px": box_diff})
        assert score_diff < TOL
        assert box_diff < 1e-2  # pixels of a 320 px original: code errors x anchor sizes
    _report(case["name"], size, "detections", report)


def test_converter_names_mismatched_tensors(case, tmp_path):
    if case["name"] != "d0":
        pytest.skip("once is enough")
    # the tool's path: .npz checkpoint -> .pdparams that a fresh model loads unchanged
    from ppdet_lite.tools.convert_effdet import main

    dst = str(tmp_path / "d0")
    assert main(["--src", os.path.join(case["dir"], "weights.npz"), "-c",
                 os.path.join(ROOT, "configs", "efficientdet_d0.yml"), "--dst", dst]) == 0
    loaded = paddle.load(dst + ".pdparams")
    for key, value in case["model"].state_dict().items():
        np.testing.assert_array_equal(loaded[key].numpy(), value.numpy(), err_msg=key)
    assert main(["--src", os.path.join(case["dir"], "weights.npz"), "-c",
                 os.path.join(ROOT, "configs", "efficientdet_d1.yml"), "--dst", dst]) == 2
    other = build_model(load_config(os.path.join(ROOT, "configs", "efficientdet_d1.yml")))
    with pytest.raises(ValueError, match="shape mismatches"):
        convert_effdet_state_dict(case["weights"], other)
    extra = dict(case["weights"], **{"fpn.bogus.weight": np.zeros([1], "float32")})
    with pytest.raises(ValueError, match="fpn.bogus.weight"):
        convert_effdet_state_dict(extra, case["model"])

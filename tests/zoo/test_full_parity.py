"""Whole-model parity with PaddleDetection 2.6.0 for every zoo config (80 classes).

Per config: our ``build_model(load_config(...))`` and PaddleDetection's ``YOLOv3`` assembled from
its own classes with the same sections (backbone, neck, head + loss, BBoxPostProcess with YOLOBox
and the config's NMS) share state_dict keys/shapes and random weights. In eval mode backbone,
neck and head maps agree to 1e-4 and the final ``bbox`` / ``bbox_num`` agree; in train mode
(DropBlock off) every loss term agrees to rtol 1e-4 on a batch whose targets come from our
``Gt2YoloTarget``, which itself gives PaddleDetection's arrays with the config's reader settings.

Random weights are made informative, identically in both models: the output convs are rescaled and
one objectness bias bisected so that 5-99 detections per image survive NMS (``calibrate_head``);
in training the objectness bias is 0 and half the gt boxes sit where near-anchor predictions of
negative cells overlap them around the ignore threshold (``near_anchor_boxes``).

Row comparison rule (``assert_same_detections``): per image, every row of ours has a row of
PaddleDetection's with the same class and |score|, |box| differences <= tol, and vice versa; a row
may go unmatched only when its score lies within tol of that image's lowest kept score (a near-tie
at the keep_top_k cut). Empty images: PaddleDetection's YOLOv3 returns no row (bbox_num 0), ours a
dummy row [0, 0, 0, 0, 1, 1] (bbox_num 1); see ``ppdet_lite/modeling/post_process.py``.
"""
import copy
import inspect
import os
from typing import Dict, List

import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.data.batch_transforms import Gt2YoloTarget

from ._parity import assert_same_keys, import_ppdet, max_diffs, random_state

pytestmark = pytest.mark.slow  # exports / converts / trains: the full suite runs it, -m "not slow" skips it

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
SUB_OBJECTS = ("loss", "iou_loss", "iou_aware_loss", "decode", "nms")
DUMMY_ROW = [0., 0., 0., 0., 1., 1.]
# name: (batch, input side). Deep ResNets get the smallest input that keeps every level >= 2x2.
CASES = {
    "ppyolo_tiny": (2, 96),
    "ppyolo_mbv3_large": (2, 96),
    "ppyolo_mbv3_small": (2, 96),
    "ppyolo_r18vd": (2, 96),
    "ppyolo_r50vd_dcn": (2, 64),
    "ppyolov2_r50vd_dcn": (2, 64),
    "ppyolov2_r101vd_dcn": (2, 64),
}


def load(name: str):
    return ppdet_lite.load_config(os.path.join(CONFIGS, f"{name}.yml"))


def ref_component(cfg, spec, **explicit):
    """PaddleDetection's class for ``spec`` (a section name or inline dict with ``name``), built
    with that section's keys, sub-objects built the same way, and the shared globals
    (num_classes, norm_type) its constructor declares, as PaddleDetection's ``__shared__`` does."""
    modeling = import_ppdet("ppdet.modeling")
    section = dict(spec) if isinstance(spec, dict) else dict(cfg.get(spec) or {})
    name = section.pop("name", spec)
    section.pop("in_channels", None)  # informative in our configs; passed explicitly below
    for key in SUB_OBJECTS:
        if isinstance(section.get(key), (str, dict)):
            section[key] = ref_component(cfg, section[key])
    cls = getattr(modeling, name)
    accepted = inspect.signature(cls.__init__).parameters
    for key in ("num_classes", "norm_type"):
        if key in accepted and key in cfg and key not in section:
            section[key] = cfg[key]
    return cls(**section, **explicit)


def ref_model(cfg):
    """PaddleDetection's YOLOv3 with the config's backbone, neck, head (with loss), post-process."""
    modeling = import_ppdet("ppdet.modeling")
    arch = cfg["YOLOv3"]
    backbone = ref_component(cfg, arch["backbone"])
    neck = ref_component(cfg, arch["neck"], in_channels=[s.channels for s in backbone.out_shape])
    head = ref_component(cfg, arch["yolo_head"], in_channels=[s.channels for s in neck.out_shape])
    post = ref_component(cfg, arch["post_process"])
    return modeling.YOLOv3(backbone=backbone, neck=neck, yolo_head=head, post_process=post)


def channel_slots(head, slot: int) -> List[np.ndarray]:
    """Per level, the raw output channel of ``slot`` (0-3 x, y, w, h; 4 obj) for each anchor."""
    no = head.num_classes + 5
    slots = []
    for anchors in head.anchors:
        start = len(anchors) if head.iou_aware else 0
        slots.append(start + np.arange(len(anchors)) * no + slot)
    return slots


def set_objectness_bias(head, value: float):
    """Objectness bias of every anchor, every level = ``value`` (same attributes in both heads)."""
    for conv, obj in zip(head.yolo_outputs, channel_slots(head, 4)):
        bias = conv.bias.numpy()
        bias[obj] = value
        conv.bias.set_value(bias)


def calibrate_head(model, necks: List[paddle.Tensor], inputs, target: float = 80.,
                   box_std: float = 0.1) -> Dict[str, np.ndarray]:
    """Make random-weight outputs non-trivial: scale each output conv so its logits have unit
    std (scores not saturated at 0 or 1) and its x, y, w, h logits std ``box_std`` (predicted
    boxes near their anchors, so they overlap anchor-like gt boxes across the ignore threshold);
    then bisect one objectness bias for all anchors so that about ``target`` decoded (box, class)
    scores per image pass the NMS score threshold.
    Returns the head's new state to copy into the other model."""
    head = model.yolo_head
    box_slots = [np.concatenate(lvl) for lvl in zip(*(channel_slots(head, k) for k in range(4)))]
    with paddle.no_grad():
        for conv, feat, box in zip(head.yolo_outputs, necks, box_slots):
            gain = np.full(conv.bias.shape, 1. / float(conv(feat).std()), "float32")
            gain[box] *= box_std
            conv.weight.set_value(conv.weight * paddle.to_tensor(gain).reshape([-1, 1, 1, 1]))
            conv.bias.set_value(conv.bias * paddle.to_tensor(gain))
    thresh = model.post_process.nms.score_threshold

    def passing(obj_bias: float) -> float:
        set_objectness_bias(head, obj_bias)
        with paddle.no_grad():
            _, scores = model.post_process.decode(head(necks), head.mask_anchors,
                                                  inputs["im_shape"], inputs["scale_factor"])
        return float((scores > thresh).sum()) / scores.shape[0]

    lo, hi = -30., 10.
    for _ in range(16):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if passing(mid) > target else (mid, hi)
    passing(lo)
    return {k: v.numpy() for k, v in model.state_dict().items() if k.startswith("yolo_head.")}


def disable_dropblock(model) -> int:
    """keep_prob 1 in every DropBlock (then identity in training too); returns how many."""
    blocks = [m for m in model.sublayers() if type(m).__name__ == "DropBlock"]
    for m in blocks:
        m.keep_prob = 1.0
    return len(blocks)


def eval_inputs(batch: int, size: int, seed: int) -> Dict[str, paddle.Tensor]:
    rng = np.random.RandomState(seed)
    scale = np.array([[1.0, 1.0], [0.5, 0.8]] * batch, "float32")[:batch]
    return {"image": paddle.to_tensor(rng.randn(batch, 3, size, size).astype("float32")),
            "im_shape": paddle.to_tensor([[size, size]] * batch, dtype="float32"),
            "scale_factor": paddle.to_tensor(scale)}


def yolo_target_settings(cfg) -> dict:
    """The config's TrainReader Gt2YoloTarget keys (num_classes from the config by default)."""
    ops = {list(t)[0]: list(t.values())[0] for t in cfg["TrainReader"]["batch_transforms"]}
    return {"num_classes": cfg["num_classes"], **ops["Gt2YoloTarget"]}


def random_samples(batch: int, size: int, num_boxes: int, num_classes: int, seed: int,
                   pad: int = 2) -> List[dict]:
    """Samples as the reader hands them to Gt2YoloTarget: CHW image, normalized cx,cy,w,h boxes
    padded with zero rows (PadBox), int32 classes [K,1], float32 scores [K,1] (one mixup score)."""
    rng = np.random.RandomState(seed)
    samples = []
    for _ in range(batch):
        k = num_boxes + pad
        box = np.zeros([k, 4], "float32")
        box[:num_boxes, :2] = rng.uniform(0.1, 0.9, [num_boxes, 2])
        box[:num_boxes, 2:] = rng.uniform(0.08, 0.9, [num_boxes, 2])
        cls = np.zeros([k, 1], "int32")
        cls[:num_boxes, 0] = rng.randint(0, num_classes, num_boxes)
        score = np.zeros([k, 1], "float32")
        score[:num_boxes, 0] = 1.0
        score[0, 0] = 0.7
        samples.append({"image": rng.randn(3, size, size).astype("float32"), "gt_bbox": box,
                        "gt_class": cls, "gt_score": score})
    return samples


def near_anchor_boxes(settings: dict, size: int, n: int, rng) -> np.ndarray:
    """[n, 4] normalized cx, cy, w, h: an anchor that fits the image, scaled by U(0.8, 1.25),
    centred on a cell edge of its level (mid-cell along the other axis), so the near-anchor
    prediction of the neighbouring, negative cell overlaps it with IoU (w - s/2) / (w + s/2),
    ~0.3-0.8 for w = 1-4 strides s: the ignore threshold decides."""
    anchor_idx, level = np.array([(a, lvl) for lvl, mask in enumerate(settings["anchor_masks"])
                                  for a in mask if max(settings["anchors"][a]) <= size]).T
    pick = rng.randint(len(anchor_idx), size=n)
    wh = np.array(settings["anchors"])[anchor_idx[pick]] * rng.uniform(0.8, 1.25, [n, 2]) / size
    cells = (size // np.array(settings["downsample_ratios"])[level[pick]])[:, None]
    frac = np.full([n, 2], 0.5)
    frac[np.arange(n), rng.randint(2, size=n)] = 0.
    cxy = (rng.randint(1, cells, [n, 2]) + frac + rng.uniform(-0.05, 0.05, [n, 2])) / cells
    return np.concatenate([cxy, np.minimum(wh, 0.95)], 1).astype("float32")


def train_inputs(cfg, batch: int, size: int, seed: int) -> Dict[str, paddle.Tensor]:
    """A collated training batch: per image 4 random and 6 near-anchor boxes (+ padding);
    gt_class / gt_score kept for the loss dict as the loader does."""
    samples = random_samples(batch, size, 10, cfg["num_classes"], seed)
    rng = np.random.RandomState(seed)
    for s in samples:
        s["gt_bbox"][4:10] = near_anchor_boxes(yolo_target_settings(cfg), size, 6, rng)
    kept = {k: np.stack([s[k] for s in samples]) for k in ("gt_class", "gt_score")}
    samples = Gt2YoloTarget(**yolo_target_settings(cfg))(samples)
    inputs = {k: paddle.to_tensor(np.stack([s[k] for s in samples])) for k in samples[0]}
    inputs.update({k: paddle.to_tensor(v) for k, v in kept.items()})
    inputs["im_shape"] = paddle.to_tensor([[size, size]] * batch, dtype="float32")
    inputs["scale_factor"] = paddle.ones([batch, 2], dtype="float32")
    return inputs


def split_rows(bbox: np.ndarray, bbox_num: np.ndarray) -> List[np.ndarray]:
    return np.split(bbox, np.cumsum(bbox_num)[:-1])


def assert_same_detections(ours_bbox, ours_num, ref_bbox, ref_num, tol: float = 1e-4) -> float:
    """Rule in the module doc. Returns the max |diff| over matched rows (score and box)."""
    ours_bbox, ours_num = np.asarray(ours_bbox), np.asarray(ours_num).reshape(-1)
    ref_bbox, ref_num = np.asarray(ref_bbox).reshape(-1, 6), np.asarray(ref_num).reshape(-1)
    assert len(ours_num) == len(ref_num)
    worst = 0.0
    for ours, ref in zip(split_rows(ours_bbox, ours_num), split_rows(ref_bbox, ref_num)):
        if len(ref) == 0:  # PaddleDetection: nothing; ours: the dummy row
            np.testing.assert_array_equal(ours, [DUMMY_ROW])
            continue
        assert len(ours) == len(ref)
        # pairwise max |diff| over (score, box); different classes never match
        dist = np.abs(ours[:, None, 1:] - ref[None, :, 1:]).max(-1)
        dist[ours[:, None, 0] != ref[None, :, 0]] = np.inf
        cut = min(ours[:, 1].min(), ref[:, 1].min()) + tol
        for rows, best in ((ours, dist.min(1)), (ref, dist.min(0))):
            unmatched = best > tol
            assert (rows[unmatched, 1] <= cut).all(), f"unmatched rows {rows[unmatched]}"
        matched = dist.min(1)[dist.min(1) <= tol]
        worst = max(worst, float(matched.max()) if len(matched) else 0.0)
    return worst


def rel_diffs(ours: Dict[str, paddle.Tensor], ref: Dict[str, paddle.Tensor]) -> Dict[str, float]:
    assert set(ours) == set(ref)
    return {k: abs(float(ours[k]) - float(ref[k])) / max(abs(float(ref[k])), 1e-12) for k in ref}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if "r101" in n else n
                                  for n in CASES])
def test_full_model_matches_paddledetection(name):
    batch, size = CASES[name]
    cfg = load(name)
    paddle.seed(0)
    ours, ref = ppdet_lite.build_model(cfg), ref_model(cfg)
    assert_same_keys(ours, ref)
    state = random_state(ref, seed=0)
    for model in (ours, ref):
        model.set_state_dict(state)
        model.eval()

    # eval: stage by stage (head calibrated on ours, copied into theirs), then the whole
    # forward with decode + NMS
    inputs = eval_inputs(batch, size, seed=1)
    with paddle.no_grad():
        feats = (ours.backbone(inputs), ref.backbone(inputs))
        necks = (ours.neck(feats[0]), ref.neck(feats[1]))
    ref_state = ref.state_dict()
    for key, value in calibrate_head(ours, necks[0], inputs).items():
        ref_state[key].set_value(value)
    for a, b in zip(ours.state_dict().values(), ref.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with paddle.no_grad():
        heads = (ours.yolo_head(necks[0]), ref.yolo_head(necks[1]))
        out, out_ref = ours(dict(inputs)), ref(dict(inputs))
    diffs = {stage: max(max_diffs(*pair)) for stage, pair in
             (("backbone", feats), ("neck", necks), ("head", heads))}
    assert max(diffs.values()) <= 1e-4, diffs
    num, num_ref = out["bbox_num"].numpy(), out_ref["bbox_num"].numpy()
    assert num.tolist() == num_ref.tolist()
    assert 5 <= num.min() and num.max() < 100  # non-trivial and below keep_top_k
    box_diff = assert_same_detections(out["bbox"], num, out_ref["bbox"], num_ref)

    # empty images: the last image's objectness logits set to -30 in both post-processes
    # (eval head maps are na·(5+nc) channels, IoU-aware ones already rescored)
    lowered = []
    for h, anchors in zip(heads[0], ours.yolo_head.anchors):
        h = h.numpy().copy()
        no = h.shape[1] // len(anchors)
        h[-1, 4::no] = -30.
        lowered.append(paddle.to_tensor(h))
    args = (ours.yolo_head.mask_anchors, inputs["im_shape"], inputs["scale_factor"])
    bbox, bbox_num, _ = ours.post_process(lowered, *args)
    bbox_ref, bbox_num_ref, _ = ref.post_process(lowered, *args)
    assert bbox_num_ref.numpy()[-1] == 0 and bbox_num.numpy()[-1] == 1
    assert_same_detections(bbox, bbox_num, bbox_ref, bbox_num_ref)

    # train mode, DropBlock off, objectness bias 0 (negatives weigh, so the ignore mask shows):
    # each loss term on the same batch and targets
    blocks = disable_dropblock(ours)
    assert blocks == disable_dropblock(ref)
    assert (blocks > 0) == cfg[cfg["YOLOv3"]["neck"]].get("drop_block", False)
    for model in (ours, ref):
        set_objectness_bias(model.yolo_head, 0.)
        model.train()
    batch_in = train_inputs(cfg, batch, size, seed=2)
    losses, losses_ref = ours(dict(batch_in)), ref(dict(batch_in))
    expected = {"loss_xy", "loss_wh", "loss_iou", "loss_obj", "loss_cls", "loss"}
    if cfg["YOLOv3Head"].get("iou_aware"):
        expected.add("loss_iou_aware")
    assert set(losses) == set(losses_ref) == expected
    for key in losses_ref:
        np.testing.assert_allclose(float(losses[key]), float(losses_ref[key]), rtol=1e-4,
                                   err_msg=key)
    rel = rel_diffs(losses, losses_ref)
    print(f"\nPARITY {name} | backbone {diffs['backbone']:.2e} neck {diffs['neck']:.2e} "
          f"head {diffs['head']:.2e} | bbox rows {int(num.sum())} max diff {box_diff:.2e} | "
          f"bbox_num {num.tolist()} | " + " ".join(f"{k} {v:.1e}" for k, v in sorted(rel.items())))


@pytest.mark.parametrize("name", list(CASES))
def test_yolo_targets_match_paddledetection(name):
    """Our Gt2YoloTarget with the config's TrainReader settings gives PaddleDetection's arrays."""
    ref_op = import_ppdet("ppdet.data.transform.batch_operators").Gt2YoloTarget
    cfg = load(name)
    for seed, size in ((3, 96), (4, 160)):
        samples = random_samples(4, size, 12, cfg["num_classes"], seed)
        ours = Gt2YoloTarget(**yolo_target_settings(cfg))(copy.deepcopy(samples))
        ref = ref_op(**yolo_target_settings(cfg))(copy.deepcopy(samples))
        levels = len(cfg["YOLOv3Head"]["anchor_masks"])
        for a, b in zip(ours, ref):
            assert sorted(a) == sorted(b)
            for i in range(levels):
                np.testing.assert_array_equal(a[f"target{i}"], b[f"target{i}"])
        positives = sum(int((s[f"target{i}"][:, 5] > 0).sum()) for s in ours for i in range(levels))
        assert positives >= len(ours) * 4


def test_detection_comparison_rule():
    """The row rule itself: near-tie order and a near-tie at the keep_top_k cut pass, a moved box,
    a changed class or a missing image fail; empty images are the dummy row on our side."""
    ref = np.array([[3, .90, 1, 1, 5, 5], [3, .50, 2, 2, 6, 6], [3, .50, 9, 9, 12, 12],
                    [7, .30, 0, 0, 4, 4], [1, .20, 5, 5, 8, 8]], "float32")
    swapped = ref[[0, 2, 1, 3, 4]]
    swapped[:, 1:] += np.float32(2e-5)
    assert assert_same_detections(swapped, [5], ref, [5]) <= 2.1e-5
    cut = ref.copy()
    cut[4] = [6, .20 + 5e-5, 1, 2, 3, 4]  # another row of (almost) the lowest score was kept
    assert_same_detections(cut, [5], ref, [5])
    moved, relabelled = ref.copy(), ref.copy()
    moved[1, 5] += 0.01
    relabelled[0, 0] = 4
    for bad in (moved, relabelled):
        with pytest.raises(AssertionError):
            assert_same_detections(bad, [5], ref, [5])
    ours = np.vstack([ref[:2], [DUMMY_ROW]])
    assert_same_detections(ours, [2, 1], ref[:2], [2, 0])
    with pytest.raises(AssertionError):
        assert_same_detections(ours, [2, 1], np.vstack([ref[:2], ref[:1]]), [2, 1])

"""Small shapes configs and a model trained on one fixed batch, shared by the slim tests."""
import os

import numpy as np
import paddle

import ppdet_lite
from ppdet_lite.runtime.boxes import box_iou

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml")
SIZE = 96
NORMALIZE = {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "is_scale": True}}
EVAL_OPS = [{"Decode": {}}, {"Resize": {"target_size": [SIZE, SIZE], "keep_ratio": False, "interp": 2}},
            NORMALIZE, {"Permute": {}}]


def _batch_transforms():
    """The demo's train batch transforms (its anchors) at SIZE px."""
    ops = [dict(op) for op in ppdet_lite.load_config(DEMO)["TrainReader"]["batch_transforms"]]
    for op in ops:
        if "BatchRandomResize" in op:
            op["BatchRandomResize"] = dict(op["BatchRandomResize"], target_size=[SIZE])
    return ops


def overrides(tmp_dir: str, **extra) -> dict:
    """Overrides of the shapes demo: 16 train / 8 val images at 96 px, batch 8, no workers, no
    augmentation, no EMA, a constant learning rate."""
    data = os.path.join(tmp_dir, "shapes")
    out = {
        "TrainDataset.dataset_dir": data, "TrainDataset.num_images": 16, "TrainDataset.image_size": SIZE,
        "EvalDataset.dataset_dir": data, "EvalDataset.num_images": 8, "EvalDataset.image_size": SIZE,
        "TestDataset.dataset_dir": data,
        "TrainReader.batch_size": 8, "EvalReader.batch_size": 8, "worker_num": 0,
        "TrainReader.sample_transforms": [{"Decode": {}}],
        "TrainReader.batch_transforms": _batch_transforms(),
        "EvalReader.sample_transforms": EVAL_OPS, "TestReader.sample_transforms": EVAL_OPS,
        "TestReader.inputs_def.image_shape": [3, SIZE, SIZE],
        "save_dir": os.path.join(tmp_dir, "output"), "epoch": 1, "snapshot_epoch": 1, "log_iter": 5,
        "use_ema": False, "pretrain_weights": "",
        "LearningRate.schedulers": [{"name": "LinearWarmup", "start_factor": 1.0, "steps": 1}],
        "LearningRate.base_lr": 0.001,
    }
    out.update(extra)
    return out


def tiny_cfg(tmp_dir: str, **extra):
    return ppdet_lite.load_config(DEMO, overrides(str(tmp_dir), **extra))


def calibrated_tiny(tmp_dir: str):
    """``(cfg, model, batch)``: a Tiny model (96 px, zero head biases so scores spread around
    0.3, ``export.nms: false``) in eval mode, its BatchNorm statistics taken from one fixed batch."""
    from ppdet_lite.engine.trainer import Trainer

    cfg = tiny_cfg(tmp_dir, **{"YOLOv3Head.obj_bias_init": 0.0, "YOLOv3Head.cls_bias_init": 0.0,
                               "export.nms": False})
    trainer = Trainer(cfg, "train", seed=0)
    batch = fixed_batch(trainer)
    model = trainer.model
    model.train()
    with paddle.no_grad():
        for _ in range(10):
            model.neck(model.backbone(batch))
    model.eval()
    return cfg, model, batch


def fixed_batch(trainer):
    from ppdet_lite.engine.trainer import to_tensors

    return to_tensors(next(iter(trainer.loader)))


def train_steps(model, optimizer, batch, steps: int):
    """``steps`` SGD steps on one batch; returns the losses."""
    model.train()
    losses = []
    for _ in range(steps):
        out = model(batch)
        out["loss"].backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append({k: float(v) for k, v in out.items()})
    return losses


def eval_inputs(batch):
    return {k: batch[k] for k in ("image", "im_shape", "scale_factor")}


def compare_candidates(ref, out, top: int = 50, skip_empty: bool = False):
    """For each image's ``top`` best ``ref`` candidates (decoded boxes [N,M,4], scores [N,nc,M],
    as exported with ``export.nms: false``): IoU with the same candidate's box in ``out``,
    |score difference| and whether the best class agrees. ``skip_empty``: leave out ``ref``
    boxes of zero area (clipped flat at an image edge, their IoU with anything is 0)."""
    (rb, rs), (ob, os_) = ref[:2], out[:2]
    assert ob.shape == rb.shape and os_.shape == rs.shape
    ious, dscore, same = [], [], []
    for n in range(rb.shape[0]):
        idx = np.argsort(-rs[n].max(0))
        if skip_empty:
            idx = idx[np.prod(rb[n, idx, 2:] - rb[n, idx, :2], -1) > 0]
        idx = idx[:top]
        ious.append(np.diag(box_iou(rb[n, idx], ob[n, idx], eps=1e-9)))
        dscore.append(np.abs(rs[n][:, idx] - os_[n][:, idx]))
        same.append(rs[n][:, idx].argmax(0) == os_[n][:, idx].argmax(0))
    return np.concatenate(ious), np.concatenate(dscore, axis=None), np.concatenate(same)


def matched_fraction(ref, ref_num, other, other_num, top: int = 5, iou: float = 0.5) -> float:
    """Share of ``ref``'s ``top`` highest-scoring boxes per image (bbox [M,6], bbox_num [N]) that
    ``other`` also finds in that image (same class, IoU >= ``iou``)."""
    hits = []
    for r, o in zip(np.split(ref, np.cumsum(ref_num)[:-1]), np.split(other, np.cumsum(other_num)[:-1])):
        r = r[np.argsort(-r[:, 1])[:top]]
        if len(o) == 0:
            hits += [False] * len(r)
            continue
        ious = box_iou(r[:, 2:], o[:, 2:], eps=1e-9)
        hits += list(((ious >= iou) & (r[:, None, 0] == o[None, :, 0])).any(1))
    return float(np.mean(hits)) if hits else 1.0


def to_numpy(x):
    return x.numpy() if isinstance(x, paddle.Tensor) else np.asarray(x)

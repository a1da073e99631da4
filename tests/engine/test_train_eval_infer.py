"""Real training, evaluation and inference on a generated shapes set (small, CPU)."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

import ppdet_lite
from ppdet_lite.engine.checkpoint import load_weights, save_checkpoint
from ppdet_lite.engine.trainer import Trainer, to_tensors

from .helpers import DEMO, ROOT, tiny_cfg


@pytest.mark.slow
def test_a_few_iterations_lower_the_loss(tmp_path):
    trainer = Trainer(tiny_cfg(tmp_path), seed=0)
    batch = to_tensors(next(iter(trainer.loader)))
    model, opt = trainer.model, trainer.optimizer
    model.train()
    losses = []
    for _ in range(12):
        loss = model(batch)["loss"]
        loss.backward()
        opt.step()
        opt.clear_grad()
        trainer.lr.step()
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0], losses


def test_train_then_eval_writes_checkpoints_and_valid_coco_results(tmp_path):
    cfg = tiny_cfg(tmp_path, epoch=1, **{"YOLOv3Head.obj_bias_init": 0.0, "YOLOv3Head.cls_bias_init": 0.0})
    trainer = Trainer(cfg, seed=0)
    metrics = trainer.train(validate=True)
    out = os.path.join(cfg["save_dir"], cfg["filename"])
    for name in ("model_final.pdparams", "model_final.pdema", "model_final.pdopt", "best_model.pdparams",
                 "bbox.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert set(metrics) >= {"AP", "AP50"} and 0.0 <= metrics["AP50"] <= 1.0
    results = json.load(open(os.path.join(out, "bbox.json")))
    assert results, "an untrained model with zero biases still emits boxes"
    val_ids = {r["id"] for r in json.load(open(trainer.eval_dataset.get_anno()))["images"]}
    for r in results[:50]:
        assert r["image_id"] in val_ids and r["category_id"] in {1, 2, 3, 4} and len(r["bbox"]) == 4
        assert r["bbox"][2] >= 0 and r["bbox"][3] >= 0 and 0 < r["score"] <= 1

    # the same weights load through the public API and evaluate to the same numbers
    model = ppdet_lite.build_model(cfg)
    load_weights(model, os.path.join(out, "model_final"))
    trainer2 = Trainer(cfg, mode="eval")
    trainer2.model.set_state_dict(model.state_dict())
    again = trainer2.evaluate()
    assert abs(again["AP"] - metrics["AP"]) < 1e-9


def test_infer_tool_writes_annotated_image_and_json(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"YOLOv3Head.obj_bias_init": 0.0, "YOLOv3Head.cls_bias_init": 0.0})
    model = ppdet_lite.build_model(cfg)
    weights = save_checkpoint(str(tmp_path / "w"), "m", model.state_dict())
    from ppdet_lite.data.shapes import make_shapes_dataset

    make_shapes_dataset(str(tmp_path / "imgs"), num_train=2, num_val=0, image_size=96, seed=3)
    image = sorted(f for f in os.listdir(tmp_path / "imgs" / "train") if f.endswith(".jpg"))[0]
    src = str(tmp_path / "imgs" / "train" / image)
    out_dir = tmp_path / "vis"
    opts = [f"weights={weights}", f"TestDataset.dataset_dir={tmp_path / 'shapes'}",
            "TestReader.sample_transforms=[{Decode: {}}, {Resize: {target_size: [96, 96], keep_ratio: false}}, "
            "{NormalizeImage: {}}, {Permute: {}}]"]
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "infer.py"), "-c", DEMO,
                           "--infer_img", src, "--draw_threshold", "0.05", "--output_dir", str(out_dir),
                           "--save_results", "-o", *opts], capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    drawn = cv2.imread(str(out_dir / image))
    assert drawn is not None and drawn.shape == cv2.imread(src).shape
    assert np.abs(drawn.astype(int) - cv2.imread(src).astype(int)).sum() > 0, "boxes were drawn"
    (result,) = json.load(open(out_dir / "bbox.json"))  # one record per image, the Detections JSON
    assert result["image"] == src and len(result["boxes"]) == len(result["scores"]) > 0
    assert all(s >= 0.05 for s in result["scores"]) and all(
        n in ("circle", "rectangle", "triangle", "diamond") for n in result["class_names"])


def test_detector_api_on_array_and_path(tmp_path):
    cfg = tiny_cfg(tmp_path, **{"YOLOv3Head.obj_bias_init": 0.0, "YOLOv3Head.cls_bias_init": 0.0})
    model = ppdet_lite.build_model(cfg)
    weights = save_checkpoint(str(tmp_path / "w"), "m", model.state_dict())
    det = ppdet_lite.Detector(cfg, weights=weights, threshold=0.05)
    rgb = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    res = det.predict(rgb)
    assert set(res) == {"boxes", "class_ids", "class_names", "scores"}
    assert len(res["boxes"]) == len(res["scores"]) > 0
    assert (res["boxes"][:, [0, 2]] <= 90 + 1e-3).all() and (res["boxes"][:, [1, 3]] <= 120 + 1e-3).all()
    path = str(tmp_path / "x.png")
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    res2 = det.predict(path)
    np.testing.assert_allclose(res2["scores"], res["scores"], atol=1e-5)
    with pytest.raises(ppdet_lite.DatasetError, match="nope.jpg"):
        det.predict(str(tmp_path / "nope.jpg"))

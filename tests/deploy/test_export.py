"""tools/export_model.py + ppdet_lite.export.jit: deploy format, dygraph parity, export knobs."""
import os

import numpy as np
import pytest
import yaml

from ppdet_lite.deploy.predictor import DetectorPredictor
from ppdet_lite.export.inference import inference_predictor, run_inference

from .conftest import SIZE, export_ours
from .helpers import PYTHON, REPO, dygraph_boxes, run, same_boxes

pytestmark = pytest.mark.slow  # exports / converts / trains: the full suite runs it, -m "not slow" skips it


def test_export_writes_paddledetection_deploy_format(ours_tiny):
    assert sorted(f for f in os.listdir(ours_tiny.dir) if f.startswith(("model", "infer"))) == \
        ["infer_cfg.yml", "model.pdiparams", "model.pdiparams.info", "model.pdmodel"]
    with open(os.path.join(ours_tiny.dir, "infer_cfg.yml")) as f:
        cfg = yaml.safe_load(f)
    assert list(cfg)[:6] == ["mode", "draw_threshold", "metric", "use_dynamic_shape", "arch",
                             "min_subgraph_size"]
    assert (cfg["arch"], cfg["min_subgraph_size"], cfg["use_dynamic_shape"]) == ("YOLO", 3, False)
    assert [op["type"] for op in cfg["Preprocess"]] == ["Resize", "NormalizeImage", "Permute"]
    assert cfg["Preprocess"][0]["target_size"] == [SIZE, SIZE]
    assert cfg["Preprocess"][0]["interp"] == 2 and len(cfg["label_list"]) == 80
    det = DetectorPredictor(ours_tiny.dir)
    assert det.input_names == ["im_shape", "image", "scale_factor"]  # as PaddleDetection's


def test_inference_matches_dygraph(ours_tiny, image_files, run_boxes):
    for path in image_files:
        ref = dygraph_boxes(ours_tiny.dygraph[(SIZE, path)])
        assert len(ref) > 10  # the weights were set so that boxes exist
        same_boxes(ref, run_boxes(ours_tiny.dir, path), score_tol=1e-4, box_tol=1e-2)


def predictor_outputs(model_dir: str, size: int):
    """(input names, outputs) of Paddle Inference on a fixed random image of ``size``."""
    pred = inference_predictor(model_dir)
    feed = {"image": np.random.RandomState(0).rand(1, 3, size, size).astype("float32"),
            "im_shape": np.array([[size, size]], "float32"),
            "scale_factor": np.ones((1, 2), "float32")}
    return pred.get_input_names(), run_inference(pred, feed)


def test_dynamic_shape_fused_bn_without_nms(work, image_files):
    """image_shape [3,-1,-1] + export.fuse_conv_bn + export.nms=False: decoded boxes and scores
    equal the unfused dygraph model's at two input sizes."""
    out = export_ours(work, "ours_dyn", image_files[:1],
                      ["TestReader.inputs_def.image_shape=[3,-1,-1]", "export.fuse_conv_bn=True",
                       "export.nms=False"], sizes=(SIZE, 256))
    with open(os.path.join(out.dir, "infer_cfg.yml")) as f:
        cfg = yaml.safe_load(f)
    assert cfg["use_dynamic_shape"] is True
    with open(os.path.join(out.dir, "model.pdmodel"), "rb") as f:
        assert b"batch_norm" not in f.read()  # every BN folded into its conv
    det = DetectorPredictor(out.dir)
    for size in (SIZE, 256):
        det.ops[0].target_size = [size, size]  # the same graph at two input sizes
        det.preprocess([image_files[0]])
        boxes, scores = det.run()
        ref = out.dygraph[(size, image_files[0])]
        m = 3 * sum((size // s) ** 2 for s in (32, 16, 8))
        assert boxes.shape == (1, m, 4) and scores.shape == (1, 80, m)
        np.testing.assert_allclose(scores, ref["scores"], atol=1e-4)
        np.testing.assert_allclose(boxes, ref["boxes"], atol=2e-2)
        assert scores.max() > 0.1  # boxes exist


def test_benchmark_export_is_head_maps_from_image_only(work):
    out = export_ours(work, "ours_bench", [], ["export.benchmark=True"])
    names, maps = predictor_outputs(out.dir, SIZE)
    assert names == ["image"]  # im_shape / scale_factor are pruned from the graph
    assert [o.shape for o in maps] == [(1, 255, 6, 6), (1, 255, 12, 12), (1, 255, 24, 24)]


EXPORT_ALONE = """
import sys

import ppdet_lite  # first: zlib before paddle
from ppdet_lite.export.jit import export_model

import paddle

calls = []
set_device = paddle.set_device
paddle.set_device = lambda *a, **k: calls.append(a) or set_device(*a, **k)
cfg = ppdet_lite.load_config(sys.argv[1], ["TestReader.inputs_def.image_shape=[3,64,64]",
                                           "weights=" + sys.argv[2]])
export_model(cfg, sys.argv[3])
print("trainer imported:", "ppdet_lite.engine.trainer" in sys.modules)
print("set_device calls:", calls)
"""


def test_export_imports_no_training_loop_and_keeps_the_device(tmp_path):
    """export_model from weights in a fresh process: the training loop is never imported and
    the process's device is never switched (paddle.set_device is not called)."""
    import paddle

    import ppdet_lite
    config = os.path.join(REPO, "configs", "ppyolo_tiny_shapes.yml")
    paddle.seed(0)
    weights = str(tmp_path / "w.pdparams")
    paddle.save(ppdet_lite.build_model(ppdet_lite.load_config(config)).state_dict(), weights)
    out = run([PYTHON, "-c", EXPORT_ALONE, config, weights, str(tmp_path / "out")]).stdout
    assert "trainer imported: False" in out and "set_device calls: []" in out, out
    assert os.path.isfile(tmp_path / "out" / "ppyolo_tiny_shapes" / "model.pdmodel")

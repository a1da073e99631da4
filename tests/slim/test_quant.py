"""INT8 quantization of PP-YOLO Tiny: PTQ (quant_post_static) and PACT QAT give inference models
that Paddle Inference runs, with int8 weights, whose decoded boxes and scores stay close to the
FP32 model's. The models are exported without NMS (``export.nms: false``) so that every
candidate box can be compared with its FP32 counterpart, free of NMS ranking noise."""
import copy
import os

import numpy as np
import paddle
import pytest

import ppdet_lite
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.export.inference import inference_predictor, run_inference
from ppdet_lite.export.jit import export_model
from ppdet_lite.slim import PTQ, QAT, export_quantized, load_slim_config
from ppdet_lite.slim.quant import calibration_batches, model_size

from .helpers import ROOT, calibrated_tiny, compare_candidates as compare

pytestmark = pytest.mark.slow  # exports / converts / trains: the full suite runs it, -m "not slow" skips it

PACT = {"activation_preprocess_type": "PACT", "weight_quantize_type": "channel_wise_abs_max",
        "activation_quantize_type": "moving_average_abs_max", "weight_bits": 8, "activation_bits": 8,
        "moving_rate": 0.9, "quantizable_layer_type": ["Conv2D", "Linear"]}


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    """A Tiny model (96 px, zero head biases so scores spread around 0.3) whose BatchNorm
    statistics come from a fixed batch; its FP32 export and that export's outputs on the batch."""
    paddle.set_device("cpu")
    paddle.seed(0)
    tmp = tmp_path_factory.mktemp("quant")
    cfg, model, batch = calibrated_tiny(tmp)
    inputs = {k: batch[k].numpy() for k in ("image", "im_shape", "scale_factor")}
    fp32_dir = export_model(cfg, str(tmp / "inference"), model=copy.deepcopy(model))
    ref = run_inference(inference_predictor(fp32_dir), inputs)
    return dict(cfg=cfg, model=model, batch=batch, inputs=inputs, dir=fp32_dir, ref=ref, tmp=tmp)


def test_fp32_export_has_boxes(fp32):
    boxes, scores = fp32["ref"][:2]
    assert boxes.shape[0] == scores.shape[0] == 8 and boxes.shape[-1] == 4
    assert scores.shape[1] == fp32["cfg"]["num_classes"] and scores.max() > 0.2  # boxes worth keeping
    assert (boxes[..., 2:] > boxes[..., :2]).all()


def test_ptq_int8_model_matches_fp32(fp32):
    ptq = PTQ({"activation_quantizer": "HistQuantizer", "upsample_bins": 127, "hist_percent": 0.999},
              quant_batch_num=2)
    batches = calibration_batches(fp32["cfg"], 2, "TrainDataset")
    assert len(batches) == 2 and batches[0]["image"].shape == (8, 3, 96, 96)
    int8_dir = ptq.quantize(fp32["dir"], str(fp32["tmp"] / "ptq"), batches)
    assert os.path.isfile(os.path.join(int8_dir, "infer_cfg.yml"))
    assert model_size(int8_dir) < 0.5 * model_size(fp32["dir"])   # int8 weights
    ious, dscore, same = compare(fp32["ref"], run_inference(inference_predictor(int8_dir), fp32["inputs"]))
    assert ious.min() > 0.5 and ious.mean() > 0.95, (ious.min(), ious.mean())
    assert dscore.mean() < 0.01 and same.mean() > 0.95, (dscore.mean(), same.mean())


@pytest.mark.parametrize("pact", [True, False], ids=["PACT", "plain"])
def test_qat_trains_exports_and_matches_fp32(fp32, pact):
    model = copy.deepcopy(fp32["model"])
    config = dict(PACT) if pact else {k: v for k, v in PACT.items() if k != "activation_preprocess_type"}
    qat = QAT(config)
    assert qat.pact == pact
    qat(model)
    opt = paddle.optimizer.Momentum(learning_rate=1e-5, parameters=model.parameters())
    model.train()
    for layer in model.sublayers():  # keep the reference's BatchNorm statistics
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer.eval()
    losses = []
    for _ in range(3):
        loss = model(fp32["batch"])["loss"]
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert np.isfinite(losses).all()
    int8_dir = export_quantized(fp32["cfg"], model, qat, str(fp32["tmp"] / f"qat_{pact}"))
    assert paddle.in_dynamic_mode(), "saving a PACT model must not leave static mode on"
    assert model_size(int8_dir) < 0.5 * model_size(fp32["dir"])
    ious, dscore, same = compare(fp32["ref"], run_inference(inference_predictor(int8_dir), fp32["inputs"]))
    assert ious.min() > 0.5 and ious.mean() > 0.95, (ious.min(), ious.mean())
    assert dscore.mean() < 0.03 and same.mean() > 0.9, (dscore.mean(), same.mean())


def test_quant_configs_are_checked():
    with pytest.raises(ConfigError, match="closest"):
        QAT({"weight_quantise_type": "abs_max"})
    with pytest.raises(ConfigError, match="PACT"):
        QAT({"activation_preprocess_type": "LSQ"})
    with pytest.raises(ConfigError, match="activation_quantizer"):
        PTQ({"activation_quantizer": "Histogram"})
    ptq = PTQ({"activation_quantizer": "KLQuantizer", "weight_quantizer": "AbsmaxQuantizer"}, fuse=False)
    assert ptq.kwargs["algo"] == "KL" and ptq.kwargs["weight_quantize_type"] == "abs_max"
    assert ptq.kwargs["optimize_model"] is False


@pytest.mark.parametrize("config, slim_config", [
    ("ppyolo_tiny_shapes.yml", "quant/ppyolo_tiny_shapes_qat.yml"),
    ("ppyolo_tiny.yml", "quant/ppyolo_tiny_qat.yml"),
    ("ppyolo_r50vd_dcn.yml", "quant/ppyolo_r50vd_qat_pact.yml"),
    ("ppyolov2_r50vd_dcn.yml", "quant/ppyolov2_r50vd_dcn_qat.yml"),
    ("ppyolo_mbv3_large.yml", "quant/ppyolo_mbv3_large_qat.yml"),
    ("ppyolo_tiny_shapes.yml", "post_quant/ppyolo_tiny_shapes_ptq.yml"),
    ("ppyolo_tiny.yml", "post_quant/ppyolo_tiny_ptq.yml"),
    ("ppyolo_r50vd_dcn.yml", "post_quant/ppyolo_r50vd_dcn_ptq.yml"),
    ("ppyolo_mbv3_large.yml", "post_quant/ppyolo_mbv3_large_ptq.yml"),
])
def test_shipped_quant_configs_load(config, slim_config):
    cfg, _ = load_slim_config(os.path.join(ROOT, "configs", config),
                              os.path.join(ROOT, "configs", "slim", slim_config))
    component = ppdet_lite.core.create(cfg["slim"], cfg[cfg["slim"]])
    assert isinstance(component, QAT if cfg["slim"] == "QAT" else PTQ)
    assert cfg["filename"] == os.path.splitext(os.path.basename(slim_config))[0]
    if cfg["slim"] == "QAT":
        assert cfg["use_ema"] is False and cfg.get("pretrain_weights")

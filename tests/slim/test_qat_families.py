"""Quantization-aware training of YOLOv4-tiny and EfficientDet-D0 end to end: ``slim/quant.py
--lite x86`` with configs/slim/quant/<model>_qat.yml on the random BN-calibrated weights of
test_ptq_families.py (the COCO configs at 160 / 128 px), one epoch on eight generated shapes
images (COCO format, so the COCO configs' COCODataSet reads them). The int8 inference model and
its Paddle Lite x86 ``.nb`` are written, and the ``.nb``'s candidates match int8 Paddle
Inference's by test_ptq_families.py's rule (exported without NMS, each image's 50 best), with
a lower mean IoU: QAT observes every conv output, and Lite's x86 int8 convs round to those
grids where Paddle Inference's simulation does not (measured: YOLOv4-tiny IoU min 0.65 mean
0.91, EfficientDet-D0 min 0.56 mean 0.86)."""
import os
import re
import sys
from types import SimpleNamespace

import pytest
import yaml

from ppdet_lite.data.shapes import make_shapes_dataset
from ppdet_lite.export.inference import inference_predictor, run_inference
from ppdet_lite.export.program_edit import program_ops

from ..deploy.conftest import lite_python  # noqa: F401  (the Lite venv fixture)
from ..deploy.helpers import IMAGENET_MEAN, IMAGENET_STD, run
from ..deploy.test_families_deploy import MODELS, make_weights, reader
from ..deploy.test_lite import lite_run
from .test_ptq_families import REPORT, SHIFTS, candidates, judge, report, work  # noqa: F401


def train_reader(name: str, size: int) -> list:
    """Overrides: a TrainReader without augmentation at ``size`` px, normalised as the model's
    TestReader (darknet: [0, 1]; EfficientDet: ImageNet mean / std)."""
    yolo = name.startswith("yolo")
    norm = {"NormalizeImage": {"mean": [0.] * 3 if yolo else IMAGENET_MEAN,
                               "std": [1.] * 3 if yolo else IMAGENET_STD, "is_scale": True}}
    boxes = [{"NormalizeBox": {}}, {"PadBox": {"num_max_boxes": 20}}, {"BboxXYXY2XYWH": {}}] \
        if yolo else [{"PadBox": {"num_max_boxes": 20}}]
    sample = [{"Decode": {}}, {"Resize": {"target_size": [size, size], "keep_ratio": False, "interp": 1}}]
    flow = lambda v: yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()  # noqa: E731
    return [f"TrainReader.sample_transforms={flow(sample)}",
            f"TrainReader.batch_transforms={flow(boxes + [norm, {'Permute': {}}])}",
            "TrainReader.batch_size=4", "TrainReader.shuffle=false"]


# EfficientDet-D0's QAT run takes ~110 s (PaddleSlim's passes and the Lite conversion of ~10k
# nodes), so CI runs it only with PPDET_LITE_QAT_D0=1; its shared-filter fix is tested on a small
# model below either way (measured with it on: IoU min 0.558 mean 0.861, the same class 1.00).
QAT_D0 = pytest.mark.skipif(os.environ.get("PPDET_LITE_QAT_D0") != "1",
                            reason="EfficientDet-D0 QAT end to end (~110 s): PPDET_LITE_QAT_D0=1 runs it")


@pytest.fixture(scope="module", params=[pytest.param(n, marks=QAT_D0) if n.startswith("efficientdet")
                                        else n for n in SHIFTS])
def qat(request, work):  # noqa: F811
    name, size = request.param, MODELS[request.param]
    weights = str(work.dir / f"{name}_qat_start.pdparams")
    make_weights(name, size, weights, work.dir, shift=SHIFTS[name])
    data = str(work.dir / f"shapes_{size}")
    make_shapes_dataset(data, num_train=8, num_val=0, image_size=size)
    out = str(work.dir / "qat")
    proc = run([sys.executable, "slim/quant.py", "-c", f"configs/{name}.yml",
                "--slim_config", f"configs/slim/quant/{name}_qat.yml", "--no_eval", "--lite", "x86",
                "--output_dir", out, "-o", f"pretrain_weights={weights}", "use_gpu=False",
                f"TrainDataset.dataset_dir={data}", "TrainDataset.image_dir=train",
                "TrainDataset.anno_path=annotations/instances_train.json", "epoch=1", "worker_num=0",
                "LearningRate.schedulers=[{name: LinearWarmup, start_factor: 1.0, steps: 1}]",
                f"save_dir={work.dir / 'qat_train'}", "export.nms=False",
                *train_reader(name, size), *reader(name, size)], timeout=600)
    int8 = os.path.join(out, f"{name}_qat")
    from ppdet_lite.deploy.predictor import DetectorPredictor

    det = DetectorPredictor(int8)
    return SimpleNamespace(name=name, int8=int8, output=proc.stdout + proc.stderr,
                           nb=os.path.join(int8, "lite_x86", "model.nb"),
                           inputs=[det.preprocess([p]) for p in work.images], tmp=work.dir)


@pytest.mark.slow  # a QAT epoch, an export and a Lite conversion per model
def test_qat_writes_int8_model_and_x86_nb_matching_paddle_inference(qat, lite_python):  # noqa: F811
    table = qat.output[qat.output.index("\nmodel "):]
    assert re.search(r"\nQAT INT8 \(Inference\) +nan +nan +[\d.]+", table), table
    assert re.search(r"\nQAT INT8 Lite x86 +[\d.]+", table) and os.path.isfile(qat.nb), table
    ops = program_ops(os.path.join(qat.int8, "model.pdmodel"))
    assert {"quantize_linear", "dequantize_linear"} <= ops or \
        {"fake_quantize_dequantize_moving_average_abs_max"} <= ops, sorted(ops)
    ref = [run_inference(inference_predictor(qat.int8), i) for i in qat.inputs]
    out = [lite_run(lite_python, os.path.dirname(qat.nb), i, qat.tmp / f"{qat.name}_qat_{k}")
           for k, i in enumerate(qat.inputs)]
    judge(qat.name, "QAT int8 .nb vs int8", *candidates(ref, out), min_iou=0.5, mean_iou=0.85,
          same_class=0.9)


def test_qat_conv_shared_by_two_batch_norms_converts_and_runs_in_lite(tmp_path, lite_python):  # noqa: F811
    """One conv layer applied twice, each output with its own BatchNorm (EfficientDet's head over
    its levels), quantization-aware calibrated and exported: PaddleSlim writes one dequantize of the
    filter for both convs. ``opt`` segfaults on that unless each conv gets its own
    (``lite_x86_int8.unshare_dequantized_filters``); with it, the x86 .nb gives Paddle Inference's
    int8 outputs."""
    import numpy as np
    import paddle
    from paddle import nn

    from ppdet_lite.export import lite
    from ppdet_lite.export.program_edit import SavedProgram
    from ppdet_lite.slim import QAT

    class Shared(nn.Layer):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2D(8, 16, 3, padding=1)
            self.conv = nn.Conv2D(16, 16, 3, padding=1)
            self.bns = nn.LayerList([nn.BatchNorm2D(16) for _ in range(2)])

        def forward(self, x):
            y = self.stem(x)
            return paddle.concat([bn(self.conv(y)) for bn in self.bns], 1)

    paddle.seed(0)
    layer = Shared()
    qat = QAT({"weight_quantize_type": "channel_wise_abs_max",
               "activation_quantize_type": "moving_average_abs_max", "moving_rate": 0.9})
    qat(layer)
    rng = np.random.RandomState(0)
    batches = [rng.uniform(-1, 1, [2, 8, 32, 32]).astype("float32") for _ in range(4)]
    layer.train()
    for x in batches:  # activation scales
        layer(paddle.to_tensor(x))
    for k, bn in enumerate(layer.bns):  # far apart, so that a fold into the wrong conv shows
        bn._mean.set_value(np.full([16], 0.5 * k, "float32"))
        bn._variance.set_value(np.full([16], 4.0 ** k, "float32"))
    qat.save_quantized_model(layer, str(tmp_path / "int8" / "model"),
                             input_spec=[paddle.static.InputSpec([1, 8, 32, 32], "float32", "x")])
    (tmp_path / "int8" / "infer_cfg.yml").write_text("arch: YOLO\n")
    with SavedProgram(str(tmp_path / "int8")) as prog:
        dq = [op for op in prog.block.ops if op.type == "dequantize_linear" and prog.is_param(op.input("X")[0])]
        assert max(len(prog.consumers(op.output("Y")[0])) for op in dq) == 2  # the shared filter
    nb_dir = lite.convert(str(tmp_path / "int8"), "x86", str(tmp_path / "nb"))
    inputs = {"x": batches[0][:1]}
    ref = run_inference(inference_predictor(str(tmp_path / "int8")), inputs)[0]
    out = lite_run(lite_python, nb_dir, inputs, tmp_path / "shared")[0]
    for c in (0, 16):  # each BatchNorm's half: int8 rounding only (measured 0.03-0.04 of the max)
        assert np.abs(out[:, c:c + 16] - ref[:, c:c + 16]).max() < 0.08 * np.abs(ref[:, c:c + 16]).max()

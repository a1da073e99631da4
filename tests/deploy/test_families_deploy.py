"""The new families through the whole deploy path: YOLOv4-tiny, YOLOv4-CSP (new_coords decode in
plain ops) and EfficientDet-D0, each at a small fixed input with random BN-calibrated weights
that give confident boxes. tools/export_model.py writes PaddleDetection's deploy dir; Paddle
Inference (DetectorPredictor) gives the boxes of the dygraph ``Detector``; ONNX (onnxruntime)
and the Paddle Lite x86 ``.nb`` give Paddle Inference's; the HTTP server serves YOLOv4-tiny.
One export per model per module (``family``)."""
import os
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

from ppdet_lite.export.program_edit import SavedProgram, program_ops

from ..darknet.oracle import randomize
from .conftest import LABELS, our_cfg
from .helpers import (IMAGENET_MEAN, IMAGENET_STD, calibration_image, check_lite_x86, json_rows,
                      same_boxes, spread_scores, start_server, stop_server)

# config -> network input (EfficientDet's levels 3-7 need a multiple of 128)
MODELS = {"yolov4_tiny": 160, "yolov4_csp": 128, "efficientdet_d0": 128}
DIFFS = {}  # (model, backend) -> (max score diff, max coord diff px), printed at the end


def reader(name: str, size: int) -> list:
    """Overrides: configs/<name>.yml's TestReader at a ``size`` input (the Resize too, so that the
    dygraph Detector, which follows the reader, sees what the export sees)."""
    transforms = []
    for op in our_cfg(name, size)["TestReader"]["sample_transforms"]:
        op = {k: dict(v or {}) for k, v in op.items()}
        if "Resize" in op:
            op["Resize"]["target_size"] = [size, size]
        transforms.append(op)
    return [f"TestReader.inputs_def.image_shape=[3,{size},{size}]",
            "TestReader.sample_transforms=" + yaml.safe_dump(transforms, default_flow_style=True)
            .strip()]


def make_weights(name: str, size: int, path: str, work, shift=(-0.1, 0.1)) -> None:
    """Random weights, BN calibrated on images normalised as the reader does (BN shifts
    U(*shift), see ``randomize``), head outputs rescaled on the calibration image (prepared by
    the model's own deploy preprocessing) so that a few boxes are confident; saved to ``path``."""
    import paddle

    import ppdet_lite
    from ppdet_lite.export.jit import image_shape_of, preprocess_list
    from ppdet_lite.runtime.preprocess import batch_inputs, build_ops, preprocess

    cfg = our_cfg(name, size, reader(name, size))
    paddle.seed(0)
    model = ppdet_lite.build_model(cfg)
    yolo = name.startswith("yolo")  # darknet's input: [0, 1], no mean/std
    randomize(model, size, shift=shift,
              **({} if yolo else dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)))
    os.makedirs(work / "calibration", exist_ok=True)  # not in work/: other tests list its images
    cal = str(work / "calibration" / "calibration.png")
    cv2.imwrite(cal, calibration_image()[:, :, ::-1])
    im, info = preprocess(cal, build_ops(preprocess_list(cfg, image_shape_of(cfg))))
    spread_scores(model, size, random_bn=False, image=batch_inputs([im], [info])["image"])
    paddle.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def exports(work):
    """``get(name)`` -> namespace(name, size, dir, weights, cfg), exported once per module with
    tools/export_model.py (in process) from saved weights."""
    from ppdet_lite.tools.export_model import main as export_main
    done = {}

    def get(name):
        if name not in done:
            size = MODELS[name]
            weights = str(work / f"{name}_family.pdparams")
            make_weights(name, size, weights, work)
            export_main(["-c", f"configs/{name}.yml", "--output_dir", str(work / "families"),
                         "-o", f"weights={weights}", "use_gpu=False", *reader(name, size)])
            done[name] = SimpleNamespace(name=name, size=size, weights=weights,
                                         dir=str(work / "families" / name),
                                         cfg=our_cfg(name, size, reader(name, size)))
        return done[name]
    return get


@pytest.fixture(scope="module", params=list(MODELS))
def family(request, exports):
    return exports(request.param)


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    for (name, backend), (score, box) in sorted(DIFFS.items()):
        print(f"\n{name:16s} {backend:28s} max |score| diff {score:.1e}, "
              f"max coord diff {box:.1e} px")


def _feeds_batch_norm(prog, conv) -> bool:
    users = prog.consumers(conv.output("Output")[0])
    if len(users) == 1 and users[0].type == "elementwise_add":
        users = prog.consumers(users[0].output("Out")[0])
    return any(u.type == "batch_norm" for u in users)


def record(name: str, backend: str, diffs) -> tuple:
    worst = tuple(np.max(np.array(diffs).reshape(-1, 2), 0))
    DIFFS[(name, backend)] = worst
    return worst


@pytest.mark.slow
def test_export_dir_and_paddle_inference_equal_dygraph(family, image_files, run_boxes):
    import ppdet_lite

    files = set(os.listdir(family.dir))
    assert {"model.pdmodel", "model.pdiparams", "infer_cfg.yml"} <= files
    with open(os.path.join(family.dir, "infer_cfg.yml")) as f:
        infer_cfg = yaml.safe_load(f)
    resize = [op for op in infer_cfg["Preprocess"] if op["type"] == "Resize"][0]
    assert resize["target_size"] == [family.size] * 2 and infer_cfg["arch"]
    assert len(infer_cfg["label_list"]) == family.cfg["num_classes"]
    ops = program_ops(os.path.join(family.dir, "model.pdmodel"))
    assert "multiclass_nms3" in ops and "yolo_box" not in ops  # YOLOv4Box: plain ops
    with SavedProgram(family.dir) as prog:  # what oneDNN's conv + bias + BatchNorm fuses need
        convs = [op for op in prog.block.ops if op.type in ("conv2d", "depthwise_conv2d")]
        filters = [op.input("Filter")[0] for op in convs if _feeds_batch_norm(prog, op)]
        assert len(filters) == len(set(filters)) > 0  # EfficientDet's head: copies per level
        reshaped = [op for op in prog.block.ops if op.type == "reshape2" and prog.is_param(op.input("X")[0])]
        # EfficientDet's conv + bias + BatchNorm: biases added with axis=1; YOLOv4's program as saved
        assert not reshaped if family.name.startswith("efficientdet") else reshaped
    det = ppdet_lite.Detector(family.cfg, weights=family.weights, threshold=0.0)
    diffs, top = [], 0.0
    for path in image_files:
        dygraph = det.predict(path).rows()
        assert len(dygraph) > 10
        top = max(top, dygraph[:, 1].max())
        diffs.append(same_boxes(dygraph, run_boxes(family.dir, path), score_tol=1e-4,
                                box_tol=1e-2))
    assert top > 0.1  # a few confident boxes (the calibration image is the first one)
    score, box = record(family.name, "paddle inference vs dygraph", diffs)
    assert score < 1e-4 and box < 1e-2


@pytest.mark.slow
def test_onnx_equals_paddle_inference(family, image_files, work):
    from ppdet_lite.deploy.predictor import DetectorPredictor
    from ppdet_lite.export.onnx_export import export_onnx, onnx_run, paddle_run

    onnx_path = export_onnx(family.dir, str(work / f"{family.name}.onnx"))  # checks itself too
    det, diffs = DetectorPredictor(family.dir), []
    for path in image_files:
        inputs = det.preprocess([path])
        ref, got = paddle_run(family.dir, inputs), onnx_run(onnx_path, inputs)
        assert int(ref[1][0]) > 10
        diffs.append(same_boxes(ref[0][:int(ref[1][0])], got[0][:int(got[1][0])],
                                score_tol=1e-4, box_tol=1e-2))
    score, box = record(family.name, "onnxruntime vs inference", diffs)
    assert score < 1e-4 and box < 1e-2


@pytest.mark.slow
def test_lite_x86_equals_paddle_inference(family, image_files, lite_python, run_boxes, work):
    diffs = check_lite_x86(family.dir, image_files, lite_python, run_boxes,
                           str(work / f"{family.name}_lite"))
    score, box = record(family.name, "lite x86 vs inference", diffs)
    assert score < 1e-4 and box < 1e-2


@pytest.mark.slow
def test_server_serves_yolov4_tiny(exports, image_files, run_boxes):
    from ppdet_lite.deploy.client import predict

    tiny = exports("yolov4_tiny")
    proc, url, _ = start_server(tiny.dir, "--threshold", "0.0")
    diffs = []
    try:
        for path in image_files:
            status, body = predict(url, open(path, "rb").read())
            assert status == 200, body
            ref = run_boxes(tiny.dir, path)
            assert body["num_boxes"] == len(ref) > 10
            diffs.append(same_boxes(ref, json_rows(body), score_tol=1e-5, box_tol=1e-3))
    finally:
        stop_server(proc)
    record("yolov4_tiny", "server vs inference", diffs)


def test_lite_refuses_reduce_all_even_with_keepdim(tmp_path):
    """A sum over all axes segfaults the x86 Lite runtime with keepdim=True too (as BiFPN's
    fusion weights did before they named the axis): refused before opt, naming the fix."""
    import paddle

    from ppdet_lite.export import lite

    class Layer(paddle.nn.Layer):
        def __init__(self, axis):
            super().__init__()
            self.w = self.create_parameter([2])
            self.axis = axis

        def forward(self, x):
            return x * paddle.sum(self.w, axis=self.axis, keepdim=True)

    for axis in (None, 0):
        spec = [paddle.static.InputSpec([1, 2], "float32", "x")]
        path = tmp_path / str(axis)
        paddle.jit.save(paddle.jit.to_static(Layer(axis), input_spec=spec, full_graph=True),
                        str(path / "model"), input_spec=spec)
        found = lite.all_axes_reductions(str(path / "model.pdmodel"), keep_dim=True)
        assert len(found) == (1 if axis is None else 0)
    (tmp_path / "None" / "infer_cfg.yml").write_text("arch: YOLO\n")
    with pytest.raises(ValueError, match=r"reduce_all.*keepdim=True.*axis=0"):
        lite.convert(str(tmp_path / "None"), "x86")

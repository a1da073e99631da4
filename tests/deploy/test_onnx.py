"""ONNX export (paddle2onnx → onnxruntime) of PaddleDetection's Tiny and ours, and the refusal of
graphs ONNX cannot hold (deformable_conv, matrix_nms)."""
import zlib  # noqa: F401  (before paddle)
import os
import sys

import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.engine.onnx_export import check_convertible, export_onnx, onnx_run, paddle_run

from .helpers import PYTHON, REPO, run, same_boxes

sys.path.insert(0, os.path.join(REPO, "deploy", "python"))
from detector import DetectorPredictor  # noqa: E402


def assert_onnx_matches_paddle(model_dir: str, onnx_path: str, image_files) -> None:
    det = DetectorPredictor(model_dir)
    for path in image_files:
        inputs = det.preprocess([path])
        ref, got = paddle_run(model_dir, inputs), onnx_run(onnx_path, inputs)
        assert int(ref[1][0]) > 10
        same_boxes(ref[0][:int(ref[1][0])], got[0][:int(got[1][0])], score_tol=1e-4,
                   box_tol=1e-2)


def test_paddledetection_tiny_to_onnx(ppdet_tiny, image_files, work):
    onnx_path = export_onnx(ppdet_tiny, str(work / "ppdet_tiny.onnx"))
    assert_onnx_matches_paddle(ppdet_tiny, onnx_path, image_files)


def test_export_tool_with_onnx(ours_tiny, image_files, work, run_boxes):
    out = work / "tool_export"
    run([PYTHON, "tools/export_model.py", "-c", "configs/ppyolo_tiny.yml", "--output_dir",
         str(out), "--onnx", "-o", f"weights={ours_tiny.weights}", "use_gpu=False",
         "TestReader.inputs_def.image_shape=[3,192,192]"])
    model_dir = str(out / "ppyolo_tiny")
    assert {"model.pdmodel", "model.pdiparams", "infer_cfg.yml", "model.onnx"} <= \
        set(os.listdir(model_dir))
    assert_onnx_matches_paddle(model_dir, os.path.join(model_dir, "model.onnx"), image_files)
    # same weights as the fixture's in-process export -> same boxes
    same_boxes(run_boxes(ours_tiny.dir, image_files[0]), run_boxes(model_dir, image_files[0]),
               1e-6, 1e-4)


def save_program(tmp_path, layer, spec) -> str:
    import paddle
    paddle.jit.save(paddle.jit.to_static(layer, input_spec=spec, full_graph=True),
                    str(tmp_path / "model"), input_spec=spec)
    return str(tmp_path)


def test_matrix_nms_and_dcn_are_refused_before_converting(tmp_path):
    import paddle
    from paddle.static import InputSpec

    class WithMatrixNMS(paddle.nn.Layer):
        def forward(self, boxes, scores):
            out, num, _ = paddle.vision.ops.matrix_nms(boxes, scores, 0.01, 0.01, -1, 100,
                                                       return_index=True)
            return out, num

    class WithDCN(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.dcn = paddle.vision.ops.DeformConv2D(3, 4, 3, padding=1)

        def forward(self, x, offset, mask):
            return self.dcn(x, offset, mask)

    nms_dir = save_program(tmp_path / "nms", WithMatrixNMS(),
                           [InputSpec([1, 10, 4], "float32"), InputSpec([1, 3, 10], "float32")])
    with pytest.raises(ConfigError, match="'matrix_nms'.*export.nms=False.*MultiClassNMS"):
        export_onnx(nms_dir)
    assert not os.path.exists(os.path.join(nms_dir, "model.onnx"))
    dcn_dir = save_program(tmp_path / "dcn", WithDCN(),
                           [InputSpec([1, 3, 8, 8], "float32"), InputSpec([1, 18, 8, 8], "float32"),
                            InputSpec([1, 9, 8, 8], "float32")])
    with pytest.raises(ConfigError, match="'deformable_conv'.*opset 19"):
        check_convertible(dcn_dir)
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(dcn_dir, opset_version=19)

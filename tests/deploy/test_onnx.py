"""ONNX export (paddle2onnx → onnxruntime) of PaddleDetection's Tiny and ours, the refusal of
graphs ONNX cannot hold (deformable_conv, matrix_nms), and the way round MatrixNMS
(``-o export.nms=False``) on PP-YOLO R18vd."""
import os
import subprocess

import numpy as np
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.deploy.predictor import DetectorPredictor
from ppdet_lite.export.onnx_export import check_convertible, export_onnx, onnx_run, paddle_run

from .conftest import export_ours
from .helpers import PYTHON, REPO, run, same_boxes

pytestmark = pytest.mark.slow  # exports / converts / trains: the full suite runs it, -m "not slow" skips it


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



def test_multiclass_nms_without_nms_top_k_is_refused(tmp_path):
    """paddle2onnx turns multiclass_nms3 with nms_top_k -1 into an NMS that keeps one box."""
    import paddle
    from paddle.static import InputSpec

    from ppdet_lite.modeling.post_process import MultiClassNMS

    class WithNMS(paddle.nn.Layer):
        def __init__(self, nms_top_k):
            super().__init__()
            self.nms = MultiClassNMS(score_threshold=0.01, nms_top_k=nms_top_k, keep_top_k=100,
                                     nms_threshold=0.45)

        def forward(self, boxes, scores):
            return self.nms(boxes, scores)[:2]

    spec = [InputSpec([1, 10, 4], "float32"), InputSpec([1, 3, 10], "float32")]
    with pytest.raises(ConfigError, match="'multiclass_nms3'.*nms_top_k.*1000"):
        check_convertible(save_program(tmp_path / "all", WithNMS(-1), spec))
    check_convertible(save_program(tmp_path / "top", WithNMS(1000), spec))

def test_r18vd_with_matrix_nms_converts_with_export_nms_false(work, image_files):
    """PP-YOLO R18vd (MatrixNMS, no DCN): --onnx is refused naming matrix_nms; with
    ``-o export.nms=False`` the tool writes decoded boxes + scores, converts them to ONNX, and
    onnxruntime gives the dygraph model's numbers."""
    size, common = 128, ["num_classes=4", "use_gpu=False",
                         "TestReader.inputs_def.image_shape=[3,128,128]"]
    r18 = export_ours(work, "r18_no_nms", image_files, ["num_classes=4", "export.nms=False"],
                      sizes=(size,), config="ppyolo_r18vd")
    tool = [PYTHON, "tools/export_model.py", "-c", "configs/ppyolo_r18vd.yml", "--output_dir",
            str(work / "tool_r18"), "--onnx", "-o", f"weights={r18.weights}", *common]
    refused = subprocess.run(tool, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert refused.returncode != 0
    assert "op 'matrix_nms'" in refused.stderr and "export.nms=False" in refused.stderr
    run(tool + ["export.nms=False"])
    model_dir = str(work / "tool_r18" / "ppyolo_r18vd")
    det = DetectorPredictor(model_dir)
    m = 3 * sum((size // s) ** 2 for s in (32, 16))  # 2 levels, 3 anchors each
    for path in image_files:
        inputs = det.preprocess([path])
        boxes, scores = onnx_run(os.path.join(model_dir, "model.onnx"), inputs)
        ref = r18.dygraph[(size, path)]
        assert boxes.shape == (1, m, 4) and scores.shape == (1, 4, m)
        np.testing.assert_allclose(scores, ref["scores"], atol=1e-4)
        np.testing.assert_allclose(boxes, ref["boxes"], atol=1e-2)
        assert (scores > 0.01).sum() > 20 and scores.max() > 0.1  # boxes exist
        np.testing.assert_allclose(paddle_run(model_dir, inputs)[1], scores, atol=1e-4)  # two runtimes: float sums in another order
        print(f"r18vd onnx vs dygraph: max |score| diff {np.abs(scores - ref['scores']).max():.1e}"
              f", max coord diff {np.abs(boxes - ref['boxes']).max():.1e} px")

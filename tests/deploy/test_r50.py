"""PP-YOLO R50vd-DCN (MatrixNMS, DCN, CoordConv, IoU-aware 0.4) and PP-YOLOv2 R50vd-DCN (PAN,
Mish, IoU-aware 0.5) through every deploy path: Paddle Inference equals dygraph, the x86 Lite .nb
equals Paddle Inference, ONNX export is refused naming DCN and MatrixNMS. The models are the
configs as written with 4 classes at a fixed 128 px input, random weights and head biases set so
boxes exist; each is exported once per module."""
import os

import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.export import lite
from ppdet_lite.export.onnx_export import export_onnx

from .conftest import export_ours
from .helpers import check_lite_x86, dygraph_boxes, same_boxes

pytestmark = pytest.mark.slow  # two R50 exports (module-scoped) and their Lite conversions
SIZE = 128
# ops each graph must hold (what makes these models different from Tiny)
MODEL_OPS = {"ppyolo_r50vd_dcn": {"deformable_conv", "matrix_nms", "yolo_box", "leaky_relu"},
             "ppyolov2_r50vd_dcn": {"deformable_conv", "matrix_nms", "yolo_box", "mish"}}


@pytest.fixture(scope="module", params=sorted(MODEL_OPS))
def r50(request, work, image_files):
    """Our exported R50 model: namespace(dir, dygraph outputs per (SIZE, image), cfg)."""
    return export_ours(work, request.param, image_files, ["num_classes=4"], sizes=(SIZE,),
                       config=request.param, save_weights=False)


def zero_d_outputs(pdmodel: str) -> set:
    """Types of the ops whose output the program declares 0-D (batch_norm's saved statistics,
    which carry no shape, left out)."""
    from paddle.base.proto import framework_pb2
    desc = framework_pb2.ProgramDesc()
    with open(pdmodel, "rb") as f:
        desc.ParseFromString(f.read())
    dims = {v.name: list(v.type.lod_tensor.tensor.dims) for v in desc.blocks[0].vars
            if v.type.type == 7}  # LOD_TENSOR
    return {op.type for op in desc.blocks[0].ops for slot in op.outputs
            if not slot.parameter.startswith(("Saved", "Reserve"))
            for name in slot.arguments if dims.get(name) == []}


def test_graph_holds_the_model_and_nothing_lite_rejects(r50):
    pdmodel = os.path.join(r50.dir, "model.pdmodel")
    ops = lite.program_ops(pdmodel)
    assert MODEL_OPS[r50.cfg["filename"]] <= ops
    assert not {op for op in ops if "flatten" in op}
    assert lite.all_axes_reductions(pdmodel, keep_dim=False) == [] and lite.zero_d_constants(pdmodel) == []
    # the only 0-D values are indexed shapes (paddle.shape(x)[0] in CoordConv, k[0] + n[0] in
    # pad_empty_images), which the Lite runtime runs (the test below)
    assert zero_d_outputs(pdmodel) <= {"slice", "elementwise_add", "cast"}


def test_inference_matches_dygraph(r50, image_files, run_boxes):
    for path in image_files:
        ref = dygraph_boxes(r50.dygraph[(SIZE, path)])
        assert len(ref) > 10 and len({int(c) for c in ref[:, 0]}) > 1
        score_diff, box_diff = same_boxes(ref, run_boxes(r50.dir, path), score_tol=1e-4,
                                          box_tol=1e-2)
        print(f"{r50.cfg['filename']} inference vs dygraph: {len(ref)} boxes, max |score| diff "
              f"{score_diff:.1e}, max coord diff {box_diff:.1e} px")
        assert score_diff < 1e-4 and box_diff < 1e-2


def test_lite_x86_matches_inference(r50, image_files, lite_python, run_boxes, work):
    score_diff, box_diff = check_lite_x86(r50.dir, image_files, lite_python, run_boxes,
                                          str(work / f"lite_{r50.cfg['filename']}"))
    print(f"{r50.cfg['filename']} lite x86 vs inference: max |score| diff {score_diff:.1e}, "
          f"max coord diff {box_diff:.1e} px")
    assert score_diff < 1e-4 and box_diff < 1e-2


def test_onnx_export_is_refused_naming_dcn_and_matrix_nms(r50):
    with pytest.raises(ConfigError, match="'deformable_conv'.*opset 19.*'matrix_nms'.*"
                                          "export.nms=False"):
        export_onnx(r50.dir)
    assert not os.path.exists(os.path.join(r50.dir, "model.onnx"))

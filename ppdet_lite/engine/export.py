"""Moved to ``ppdet_lite.export.jit`` (export) and ``ppdet_lite.export.inference`` (predictor);
this re-export goes once its last importers are updated."""
from ..export.inference import inference_predictor, run_inference  # noqa: F401
from ..export.jit import *  # noqa: F401,F403
from ..export.jit import image_shape_of, infer_cfg, preprocess_list, set_export_mode  # noqa: F401

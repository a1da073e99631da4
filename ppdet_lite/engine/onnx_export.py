"""Moved to ``ppdet_lite.export.onnx_export``; this re-export goes once its last importers are updated."""
from ..export.onnx_export import *  # noqa: F401,F403
from ..export.onnx_export import match_boxes  # noqa: F401

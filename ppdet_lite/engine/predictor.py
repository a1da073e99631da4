"""``Detector``: a dygraph model plus its TestReader preprocessing, for scripts and notebooks.

    det = Detector("configs/ppyolo_tiny_shapes.yml", weights="output/ppyolo_tiny_shapes/best_model")
    res = det.predict("image.jpg")            # or encoded bytes, or an HWC uint8 RGB array
    res.boxes, res.scores, res.class_ids, res.class_names   # a ppdet_lite.runtime.result.Detections

The same record, threshold rule and preprocessing as the deploy runtimes (``ppdet_lite.runtime``).
"""
from typing import Any, Dict, Optional, Union

import numpy as np
import paddle

from ..core.config import load_config
from ..core.device import set_device
from ..data.builder import label_list
from ..data.loader import Compose, build_ops
from ..runtime.images import ImageLike, read_image
from ..runtime.result import Detections, split_detections
from ..utils.logger import get_logger
from .checkpoint import load_weights

logger = get_logger(__name__)


class Detector:
    """Load once, predict many: boxes in original-image pixels. ``model``: predict with this
    (already loaded) model instead of building ``config``'s and loading ``weights``."""

    def __init__(self, config: Union[str, Dict[str, Any]], weights: Optional[str] = None,
                 threshold: float = 0.5, overrides=None, model: Optional[paddle.nn.Layer] = None):
        from ..modeling import build_model

        self.cfg = load_config(config, overrides) if isinstance(config, str) else config
        set_device(self.cfg)
        self.model = model
        if model is None:
            self.model = build_model(self.cfg)
            weights = weights or self.cfg.get("weights")
            if not weights:
                raise ValueError("Detector needs weights: pass weights=... or set `weights` in the config")
            load_weights(self.model, weights)
        self.model.eval()
        ops = [op for op in self.cfg["TestReader"]["sample_transforms"] if "Decode" not in op]
        where = "TestReader.sample_transforms"
        self.transform = Compose(build_ops(ops, int(self.cfg.get("num_classes", 80)), where), where)
        self.names = label_list(self.cfg)
        self.threshold = threshold

    def preprocess(self, rgb: np.ndarray) -> Dict[str, np.ndarray]:
        h, w = rgb.shape[:2]
        sample = {"image": rgb, "im_shape": np.array([h, w], np.float32),
                  "scale_factor": np.array([1.0, 1.0], np.float32), "h": h, "w": w}
        return self.transform(sample)

    @paddle.no_grad()
    def predict(self, image: ImageLike, threshold: Optional[float] = None) -> Detections:
        """One image -> its ``Detections`` with ``score >= threshold`` (default: the constructor's)."""
        sample = self.preprocess(read_image(image))
        inputs = {k: paddle.to_tensor(np.asarray(sample[k])[None]) for k in ("image", "im_shape", "scale_factor")}
        out = self.model(inputs)
        threshold = self.threshold if threshold is None else threshold
        return split_detections(out["bbox"].numpy(), out["bbox_num"].numpy(), threshold, self.names)[0]

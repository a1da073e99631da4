"""``Detector``: a dygraph model plus its TestReader preprocessing, for scripts and notebooks.

    det = Detector("configs/ppyolo_tiny_shapes.yml", weights="output/ppyolo_tiny_shapes/best_model")
    res = det.predict("image.jpg")            # or an HWC uint8 RGB array
    res["boxes"], res["class_ids"], res["class_names"], res["scores"]
"""
from typing import Any, Dict, Optional, Union

import cv2
import numpy as np
import paddle

from ..core.config import load_config
from ..core.device import set_device
from ..core.errors import DatasetError
from ..data.builder import label_list
from ..data.loader import Compose, build_ops
from ..utils.logger import get_logger
from .checkpoint import load_weights

logger = get_logger(__name__)


def read_rgb(image: Union[str, np.ndarray]) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HWC uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
        return image
    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DatasetError(f"cannot read image {image}: missing, or not an image OpenCV can decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


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
    def predict(self, image: Union[str, np.ndarray], threshold: Optional[float] = None) -> Dict[str, Any]:
        """``boxes [K,4]`` x1,y1,x2,y2 pixels, ``class_ids [K]``, ``class_names``, ``scores [K]``."""
        sample = self.preprocess(read_rgb(image))
        inputs = {k: paddle.to_tensor(np.asarray(sample[k])[None]) for k in ("image", "im_shape", "scale_factor")}
        out = self.model(inputs)
        rows = out["bbox"].numpy().reshape(-1, 6)[: int(out["bbox_num"].numpy()[0])]
        keep = rows[:, 1] >= (self.threshold if threshold is None else threshold)
        rows = rows[keep & (rows[:, 0] >= 0)]
        ids = rows[:, 0].astype(int)
        return {"boxes": rows[:, 2:6], "class_ids": ids, "scores": rows[:, 1],
                "class_names": [self.names[i] if i < len(self.names) else str(i) for i in ids]}

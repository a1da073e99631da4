"""The one numpy IoU of xyxy boxes (crop sampling, VOC matching, confusion matrix, tests)."""
import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray, pixel_offset: float = 0.0, eps: float = 0.0) -> np.ndarray:
    """IoU [N,K] of xyxy boxes ``a`` [N,4] and ``b`` [K,4].

    ``pixel_offset`` 1 counts pixel boxes inclusively (VOC: a side is x2 - x1 + 1); a pair that
    does not strictly overlap has IoU 0 either way. ``eps`` is added to the union (0/0 gives 0).
    Computed in the inputs' float type (float32 stays float32), at least float32.
    """
    dtype = np.result_type(np.asarray(a).dtype, np.asarray(b).dtype, np.float32)
    a = np.asarray(a, dtype).reshape(-1, 4)
    b = np.asarray(b, dtype).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.where((lt < rb).all(2), np.prod(rb - lt + pixel_offset, axis=2), 0).astype(dtype)
    area_a = np.prod(a[:, 2:] - a[:, :2] + pixel_offset, axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2] + pixel_offset, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a[:, None] + area_b[None, :] - inter + eps)
    return np.nan_to_num(iou, copy=False)

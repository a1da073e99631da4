"""YOLOv4Box: darknet's [yolo] decode in plain Paddle ops (Paddle's ``yolo_box`` has no
``new_coords``), with a per-level ``scale_x_y``. Exportable: only sigmoid/exp/mul/add/reshape/
concat/clip, H and W read from the graph.

Per level (anchors in input pixels, grid h x w, input size from ``im_shape``):
    new_coords=0: σ(p) on x, y, obj, cls;  bw = exp(tw)·anchor_w / input_w
    new_coords=1: the map already went through σ;  bw = 4·tw²·anchor_w / input_w
    cx = (s·x − (s−1)/2 + col) / w        (likewise y, h)
Scores are obj·cls (0 where obj < ``conf_thresh``). With ``input_hw`` (the network input's h, w)
a letterbox padding around the ``im_shape`` content is undone first
(``post_process.letterbox_correction``; nothing changes where the input equals ``im_shape``).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import paddle
import paddle.nn.functional as F

from ..core.registry import register
from .post_process import letterbox_correction

__all__ = ["YOLOv4Box", "decode_level"]


def decode_level(out: paddle.Tensor, anchors: Sequence[Sequence[float]], scale_x_y: float,
                 new_coords: bool, input_hw: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor,
                                                                     paddle.Tensor]:
    """One level: out [N, na·(5+nc), H, W], input_hw [N, 2] float (h, w) →
    (cxcywh [N, na, H·W, 4] normalized to the input, obj [N, na, H·W, 1], cls [N, na, H·W, nc]).
    """
    na = len(anchors)
    shape = paddle.shape(out)
    h, w = shape[2:3], shape[3:4]
    # H·W as a number where the graph knows it (a fixed-size export): the scores keep a static
    # box count M, which paddle2onnx's NMS needs (with M unknown it indexes scores wrongly)
    hw = out.shape[2] * out.shape[3] if out.shape[2] > 0 and out.shape[3] > 0 else -1
    p = out.reshape([0, na, out.shape[1] // na, hw]).transpose([0, 1, 3, 2])  # [N, na, HW, no]
    if not new_coords:
        p = paddle.concat([F.sigmoid(p[..., 0:2]), p[..., 2:4], F.sigmoid(p[..., 4:])], axis=-1)
    grid_wh = paddle.cast(paddle.concat([w, h]), out.dtype)
    ys = paddle.arange(0, h[0], dtype=out.dtype)
    xs = paddle.arange(0, w[0], dtype=out.dtype)
    gy = paddle.tile(ys.reshape([-1, 1]), paddle.concat([paddle.ones([1], "int32"),
                                                         paddle.cast(w, "int32")]))
    gx = paddle.tile(xs.reshape([1, -1]), paddle.concat([paddle.cast(h, "int32"),
                                                         paddle.ones([1], "int32")]))
    grid = paddle.stack([gx.reshape([-1]), gy.reshape([-1])], axis=-1)  # [HW, 2] (col, row)
    xy = (p[..., 0:2] * scale_x_y - 0.5 * (scale_x_y - 1.) + grid) / grid_wh
    anchor = paddle.to_tensor(anchors, dtype=out.dtype).reshape([1, na, 1, 2])
    in_wh = paddle.flip(input_hw, [1]).reshape([-1, 1, 1, 2])
    twh = p[..., 2:4]
    wh = (4. * twh * twh if new_coords else paddle.exp(twh)) * anchor / in_wh
    return paddle.concat([xy, wh], axis=-1), p[..., 4:5], p[..., 5:]


@register
class YOLOv4Box:
    """``__call__(head_out, levels, im_shape [N,2], scale_factor [N,2], input_hw [2] = None)`` →
    boxes [N, M, 4] (x1, y1, x2, y2 in original-image pixels, clipped when ``clip_bbox``) and
    scores [N, nc, M]. ``levels`` is ``YOLOv4Head.levels``. Rows run level by level, then anchor,
    row, column (as ``yolo_box``).
    """

    def __init__(self, conf_thresh: float = 0.005, clip_bbox: bool = True):
        self.conf_thresh = conf_thresh
        self.clip_bbox = clip_bbox

    def __call__(self, head_out: List[paddle.Tensor], levels: List[Dict],
                 im_shape: paddle.Tensor, scale_factor: paddle.Tensor,
                 input_hw: Optional[paddle.Tensor] = None):
        content_hw = paddle.cast(im_shape, "float32")
        origin_wh = paddle.flip(content_hw / scale_factor, [1])
        gain, shift = (None, None) if input_hw is None else \
            letterbox_correction(input_hw, im_shape, scale_factor)
        boxes, scores = [], []
        for out, level in zip(head_out, levels):
            box, obj, cls = decode_level(out, level["anchors"], level["scale_x_y"],
                                         level["new_coords"], content_hw)
            m = box.shape[1] * box.shape[2] if box.shape[2] > 0 else -1  # boxes of the level
            box = box.reshape([0, m, 4])
            size = origin_wh.reshape([-1, 1, 2])
            cxcy = box[..., 0:2] if gain is None else box[..., 0:2] * gain
            xy1 = (cxcy - box[..., 2:4] * 0.5) * size
            xy2 = (cxcy + box[..., 2:4] * 0.5) * size
            if shift is not None:
                xy1, xy2 = xy1 - shift, xy2 - shift
            if self.clip_bbox:
                xy1 = paddle.maximum(paddle.minimum(xy1, size - 1.), paddle.zeros_like(xy1))
                xy2 = paddle.maximum(paddle.minimum(xy2, size - 1.), paddle.zeros_like(xy2))
            boxes.append(paddle.concat([xy1, xy2], axis=-1))
            obj = obj.reshape([0, m, 1])
            score = obj * cls.reshape([0, m, cls.shape[-1]])
            # a [1] threshold, not a Python float (that becomes a 0-D constant Lite aborts on)
            thresh = paddle.full([1], self.conf_thresh, obj.dtype)
            score = score * paddle.cast(obj >= thresh, score.dtype)
            scores.append(score.transpose([0, 2, 1]))
        return paddle.concat(boxes, axis=1), paddle.concat(scores, axis=2)

"""YOLO post-process: decode (``YOLOBox``), NMS (``MultiClassNMS`` / ``MatrixNMS``) and
``BBoxPostProcess`` that chains them.

Export notes: only Paddle's ``yolo_box``, ``multiclass_nms3`` / ``matrix_nms`` ops are used;
constants are built with shape [1] (Paddle Lite rejects 0-D ``fill_constant``); reshape, never
flatten.

Letterboxed inputs: the architectures pass the network input size ``input_hw`` (from the image
tensor) with ``im_shape`` / ``scale_factor``; the decodes read ``input_hw - im_shape`` as padding
split evenly (top/left the floor half, as ``runtime.preprocess.LetterBoxResize`` places the image,
and as PaddleDetection's LetterBoxResize reports ``im_shape``) and undo it before dividing by the
scale (``letterbox_correction``). Where the input is not padded (``input_hw == im_shape``, every
Resize config) the correction is a multiply by exactly 1 and a subtraction of exactly 0: the boxes
are bit for bit those of the plain decode. Padding only at the bottom/right (``PadStride``, a batch
of different sizes) is read as centred too; the YOLO decodes never supported it.

Empty results (as PaddleDetection's ``BBoxPostProcess.get_pred``): an image without detections
gets one dummy row ``[0, 0, 0, 0, 1, 1]`` (class 0, score 0, box (0,0)-(1,1)) and its bbox_num
is 1, so every output has a valid shape. Users never see it: ``ppdet_lite.runtime.result``, which
every runtime's results go through, drops rows of score 0 (NMS keeps only scores above its
threshold) at any threshold.
"""
import contextlib
from typing import Iterator, List, Optional, Sequence, Tuple

import paddle
import paddle.nn.functional as F
from paddle.common_ops_import import LayerHelper

from ..core.registry import register
from ..core.unimplemented import NotImplementedSetting

__all__ = ["iou_aware_rescore", "letterbox_correction", "YOLOBox", "MultiClassNMS", "MatrixNMS",
           "BBoxPostProcess", "pad_empty_images"]


def _de_sigmoid(x: paddle.Tensor, eps: float = 1e-7) -> paddle.Tensor:
    """Logit of a probability, clipped to [eps, 1/eps] on the way (no 0-D constants)."""
    x = paddle.clip(x, eps, 1. / eps)
    x = paddle.clip(paddle.reciprocal(x) - 1., eps, 1. / eps)
    return -paddle.log(x)


def iou_aware_rescore(out: paddle.Tensor, na: int, factor: float) -> paddle.Tensor:
    """[N, na·(6+nc), H, W] IoU-aware map → [N, na·(5+nc), H, W] with objectness logits replaced by
    logit(σ(obj)^(1-factor) · σ(iou)^factor)."""
    ioup, x = out[:, :na], out[:, na:]
    x5 = x.reshape([0, na, x.shape[1] // na, -1])  # [N, na, no, H*W]
    ioup = F.sigmoid(ioup.reshape([0, na, 1, -1]))
    obj = F.sigmoid(x5[:, :, 4:5])
    obj = _de_sigmoid(paddle.pow(obj, 1. - factor) * paddle.pow(ioup, factor))
    y = paddle.concat([x5[:, :, :4], obj, x5[:, :, 5:]], axis=2)
    # keep C static (yolo_box checks it); H, W come from the graph when the export leaves them free
    hw = [d if d > 0 else paddle.shape(x)[i:i + 1] for i, d in ((2, x.shape[2]), (3, x.shape[3]))]
    return y.reshape([0, x.shape[1]] + hw)


def letterbox_correction(input_hw: paddle.Tensor, im_shape: paddle.Tensor,
                         scale_factor: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """(gain, shift), each [N, 1, 2] in x, y order, that turn a box decoded as if the content
    filled the input (``frac · im_shape / scale_factor``, what the decodes compute) into
    original-image pixels when the content (``im_shape`` [N, 2]) sits centred in the network input
    ``input_hw`` [2] (h, w): ``x_orig = x · gain − shift``, gain = input / im_shape, shift =
    ⌊(input − im_shape) / 2⌋ / scale_factor. Plain ops (cast, sub, div, flip); gain 1 and
    shift 0 exactly when ``input_hw == im_shape``."""
    size = paddle.cast(input_hw, "float32").reshape([1, 2])
    content = paddle.cast(im_shape, "float32")
    pad = paddle.cast(paddle.cast((size - content) * 0.5, "int32"), "float32")  # floor, pad >= 0
    gain, shift = size / content, pad / scale_factor
    return paddle.flip(gain, [1]).reshape([-1, 1, 2]), paddle.flip(shift, [1]).reshape([-1, 1, 2])


@register
class YOLOBox:
    """``yolo_box`` per level. Returns boxes [N, M, 4] xyxy in original-image pixels (clipped to
    the image when ``clip_bbox``) and scores [N, nc, M] (σ(obj)·σ(cls), zero under conf_thresh).
    Level i uses stride downsample_ratio / 2**i. With ``input_hw`` (the network input's h, w) a
    letterbox padding is undone (``letterbox_correction``) before the clip, which then follows
    ``yolo_box``'s own (x1, y1 >= 0, x2 <= w - 1, y2 <= h - 1 of ``int(im_shape / scale_factor)``).
    """

    def __init__(self, num_classes: int = 80, conf_thresh: float = 0.005,
                 downsample_ratio: int = 32, clip_bbox: bool = True, scale_x_y: float = 1.):
        self.num_classes = num_classes
        self.conf_thresh = conf_thresh
        self.downsample_ratio = downsample_ratio
        self.clip_bbox = clip_bbox
        self.scale_x_y = scale_x_y

    def __call__(self, yolo_head_out: List[paddle.Tensor], anchors: Sequence[Sequence[int]],
                 im_shape: paddle.Tensor, scale_factor: paddle.Tensor,
                 input_hw: Optional[paddle.Tensor] = None):
        origin_shape = paddle.cast(im_shape / scale_factor, "int32")
        boxes, scores = [], []
        for i, out in enumerate(yolo_head_out):
            b, s = paddle.vision.ops.yolo_box(
                out, origin_shape, anchors[i], self.num_classes, self.conf_thresh,
                self.downsample_ratio // 2 ** i, self.clip_bbox and input_hw is None,
                scale_x_y=self.scale_x_y)
            boxes.append(b)
            scores.append(paddle.transpose(s, [0, 2, 1]))
        boxes = paddle.concat(boxes, axis=1)
        if input_hw is not None:
            gain, shift = letterbox_correction(input_hw, im_shape, scale_factor)
            xy1, xy2 = boxes[..., 0:2] * gain - shift, boxes[..., 2:4] * gain - shift
            if self.clip_bbox:
                limit = paddle.flip(paddle.cast(origin_shape, "float32"), [1]).reshape([-1, 1, 2])
                xy1 = paddle.maximum(xy1, paddle.zeros_like(xy1))
                xy2 = paddle.minimum(xy2, limit - 1.)
            boxes = paddle.concat([xy1, xy2], axis=-1)
        return boxes, paddle.concat(scores, axis=2)


@register
class MultiClassNMS:
    """Per-class greedy NMS (``multiclass_nms3`` op).

    ``__call__(bboxes [N,M,4], scores [N,nc,M])`` → (out [K,6] rows (class, score, x1,y1,x2,y2)
    grouped by image, bbox_num [N] int32, index [K,1] or None).
    """

    NOT_IMPLEMENTED = {
        "trt": NotImplementedSetting((False,), "PaddleDetection's TensorRT NMS trick (nms_eta 1.1 under TRT)",
                                     "export with run_mode trt_* in deploy; NMS stays multiclass_nms3"),
        "return_rois_num": NotImplementedSetting((True,), "returning the per-image box count",
                                                 "it is always returned (bbox_num)"),
    }

    def __init__(self, score_threshold: float = .05, nms_top_k: int = -1, keep_top_k: int = 100,
                 nms_threshold: float = .5, normalized: bool = True, nms_eta: float = 1.0,
                 background_label: int = -1, return_index: bool = False):
        self.score_threshold = score_threshold
        self.nms_top_k = nms_top_k
        self.keep_top_k = keep_top_k
        self.nms_threshold = nms_threshold
        self.normalized = normalized
        self.nms_eta = nms_eta
        self.background_label = background_label
        self.return_index = return_index

    def __call__(self, bboxes, score, background_label: Optional[int] = None):
        bg = self.background_label if background_label is None else background_label
        attrs = dict(score_threshold=self.score_threshold, nms_top_k=self.nms_top_k,
                     keep_top_k=self.keep_top_k, nms_threshold=self.nms_threshold,
                     normalized=self.normalized, nms_eta=self.nms_eta, background_label=bg)
        if paddle.in_dynamic_mode():
            out, index, num = paddle._C_ops.multiclass_nms3(bboxes, score, None, *attrs.values())
        else:
            helper = LayerHelper("multiclass_nms3")
            out = helper.create_variable_for_type_inference(dtype=bboxes.dtype)
            index = helper.create_variable_for_type_inference(dtype="int32")
            num = helper.create_variable_for_type_inference(dtype="int32")
            helper.append_op(type="multiclass_nms3", inputs={"BBoxes": bboxes, "Scores": score},
                             outputs={"Out": out, "Index": index, "NmsRoisNum": num},
                             attrs=attrs)
        out.stop_gradient = index.stop_gradient = True
        return out, num, index if self.return_index else None


@register
class MatrixNMS:
    """Matrix NMS (SOLOv2; ``matrix_nms`` op), scores decayed linearly or with a Gaussian.

    ``__call__(bboxes [N,M,4], scores [N,nc,M])`` → (out [K,6], bbox_num [N] int32, index [K,1]).
    """

    def __init__(self, score_threshold: float = .05, post_threshold: float = .05,
                 nms_top_k: int = -1, keep_top_k: int = 100, use_gaussian: bool = False,
                 gaussian_sigma: float = 2., normalized: bool = False, background_label: int = 0):
        self.score_threshold = score_threshold
        self.post_threshold = post_threshold
        self.nms_top_k = nms_top_k
        self.keep_top_k = keep_top_k
        self.use_gaussian = use_gaussian
        self.gaussian_sigma = gaussian_sigma
        self.normalized = normalized
        self.background_label = background_label

    def __call__(self, bboxes, score, *args):
        out, num, index = paddle.vision.ops.matrix_nms(
            bboxes, score, self.score_threshold, self.post_threshold, self.nms_top_k,
            self.keep_top_k, use_gaussian=self.use_gaussian, gaussian_sigma=self.gaussian_sigma,
            background_label=self.background_label, normalized=self.normalized,
            return_index=True, return_rois_num=True)
        return out, num, index


def pad_empty_images(bbox: paddle.Tensor, bbox_num: paddle.Tensor):
    """Give every image with no detection one dummy row [0, 0, 0, 0, 1, 1] (see module doc).

    bbox [K,6] grouped by image, bbox_num [N] int32 → ([K+E, 6], [N]) with E empty images.
    Vectorized (sort by image) so it also holds in an exported graph.
    """
    n = paddle.shape(bbox_num)[0:1]  # [1] tensors: no 0-D constants in the graph
    k = paddle.shape(bbox)[0:1]
    num = paddle.cast(bbox_num, "int64")
    zero = paddle.zeros([1], "int64")
    empty = paddle.cast(num == zero, "int64")
    # rows of concat([bbox, one dummy per image]); never empty, even when bbox is [0, 6]
    k64, stride = paddle.cast(k, "int64"), paddle.cast(k + 1, "int64")
    rows = paddle.arange(0, k[0] + n[0], dtype="int64")
    is_dummy = paddle.cast(rows >= k64, "int64")
    img_of_real = paddle.sum(paddle.cast(
        rows.reshape([-1, 1]) >= paddle.cumsum(num).reshape([1, -1]), "int64"), axis=1)
    img_of_dummy = rows - k64
    imgs = paddle.arange(0, n[0], dtype="int64")
    dummy_used = paddle.sum(paddle.cast(img_of_dummy.reshape([-1, 1]) == imgs.reshape([1, -1]),
                                        "int64") * empty.reshape([1, -1]), axis=1)
    # sort key: image i's rows → 2i·stride + row, its dummy → (2i+1)·stride, unused dummies last
    key_real = img_of_real * 2 * stride + rows
    key_dummy = (img_of_dummy * 2 + 1) * stride + (is_dummy - dummy_used) * stride * (n * 2 + 2)
    key = key_real * (is_dummy * -1 + 1) + key_dummy * is_dummy
    dummy = paddle.tile(paddle.to_tensor([[0., 0., 0., 0., 1., 1.]], dtype=bbox.dtype),
                        paddle.concat([n, paddle.ones([1], "int32")]))
    order = paddle.slice(paddle.argsort(key), [0], [0],
                         k + paddle.cast(paddle.sum(empty, axis=0, keepdim=True), k.dtype).reshape([1]))
    out = paddle.gather(paddle.concat([bbox, dummy]), order)
    return out, paddle.cast(num + empty, bbox_num.dtype)


@register
class BBoxPostProcess:
    """decode → NMS. ``__call__(head_out, anchors, im_shape [N,2], scale_factor [N,2],
    input_hw [2] = None)`` → (bbox [M,6] (class, score, x1,y1,x2,y2 in original-image pixels),
    bbox_num [N] int32, nms index or None). Images without detections get a dummy row (see module
    doc); ``input_hw`` goes to the decode (letterbox, see module doc) where given.
    """

    NOT_IMPLEMENTED = {
        "export_onnx": NotImplementedSetting((False,), "an ONNX-friendly post-process graph",
                                             "tools/export_model.py --onnx converts the exported program"),
        "export_eb": NotImplementedSetting((False,), "the edge-board export variant"),
    }

    def __init__(self, num_classes: int = 80, decode=None, nms=None):
        self.num_classes = num_classes
        self.decode = decode
        self.nms = nms

    @contextlib.contextmanager
    def bounded(self, score_threshold: float, nms_top_k: int) -> Iterator[None]:
        """For training-time evaluation: scores below ``score_threshold`` dropped and at most
        ``nms_top_k`` boxes per image before NMS; the settings come back afterwards."""
        saved = []
        for obj, attr in ((self.decode, "conf_thresh"), (self.nms, "score_threshold")):
            if obj is not None and hasattr(obj, attr) and getattr(obj, attr) < score_threshold:
                saved.append((obj, attr, getattr(obj, attr)))
                setattr(obj, attr, score_threshold)
        if self.nms is not None and hasattr(self.nms, "nms_top_k") and not 0 < self.nms.nms_top_k <= nms_top_k:
            saved.append((self.nms, "nms_top_k", self.nms.nms_top_k))
            self.nms.nms_top_k = nms_top_k
        try:
            yield
        finally:
            for obj, attr, value in saved:
                setattr(obj, attr, value)

    def __call__(self, head_out, anchors, im_shape, scale_factor, input_hw=None):
        extra = {} if input_hw is None else {"input_hw": input_hw}
        if self.nms is None:
            bbox, bbox_num = self.decode(head_out, anchors, im_shape, scale_factor, **extra)
            return bbox, bbox_num, None
        boxes, scores = self.decode(head_out, anchors, im_shape, scale_factor, **extra)
        bbox, bbox_num, index = self.nms(boxes, scores)
        bbox, bbox_num = pad_empty_images(bbox, bbox_num)
        return bbox, bbox_num, index

"""YOLOv3 architecture (PP-YOLO, PP-YOLOv2, PP-YOLO Tiny): backbone → neck → yolo_head →
post_process. Attribute names ``backbone``, ``neck``, ``yolo_head`` give PaddleDetection's
state_dict keys.
"""
import contextlib
from typing import Dict

import paddle
import paddle.nn as nn

from ..core.registry import register

__all__ = ["YOLOv3", "input_size"]


def input_size(image: paddle.Tensor) -> paddle.Tensor:
    """[2] int32 (h, w) of the network input ``image`` [N, 3, H, W], read from the graph: the
    decode undoes a letterbox padding with it (``post_process.letterbox_correction``)."""
    return paddle.shape(image)[2:4]


@register
class YOLOv3(nn.Layer):
    """``forward(inputs)`` with inputs ``image`` [N,3,H,W] float32, ``im_shape`` [N,2] (h, w of
    the image content in the input: the whole input, or a letterbox's centred content),
    ``scale_factor`` [N,2] (content / original, y then x); in training also
    ``gt_bbox`` [N,K,4] (normalized cx,cy,w,h), ``gt_class`` [N,K,1], ``gt_score`` [N,K,1] and
    ``target0..L-1`` [N, na, 6+nc, H_l, W_l].

    Training → dict of losses incl. ``loss``. Eval → ``{'bbox': [M,6], 'bbox_num': [N]}``
    (class, score, x1,y1,x2,y2 in original-image pixels). For export:
    ``exclude_post_process`` → ``{'head_outs': [maps]}`` (raw, IoU-aware ones rescored);
    ``exclude_nms`` → ``{'boxes': [N,M,4], 'scores': [N,nc,M]}`` decoded but not suppressed.
    ``for_mot`` adds ``emb_feats`` (neck routes) to both outputs.
    """

    def __init__(self, backbone: nn.Layer, neck: nn.Layer, yolo_head: nn.Layer,
                 post_process=None, data_format: str = "NCHW", for_mot: bool = False):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.yolo_head = yolo_head
        self.post_process = post_process
        self.data_format = data_format
        self.for_mot = for_mot
        self.exclude_post_process = False
        self.exclude_nms = False

    def bounded_eval(self, score_threshold: float, nms_top_k: int):
        """Context manager: the post-process bounded for training-time evaluation (see
        ``BBoxPostProcess.bounded``); unbounded without a post-process."""
        if self.post_process is None:
            return contextlib.nullcontext()
        return self.post_process.bounded(score_threshold, nms_top_k)

    def forward(self, inputs: Dict[str, paddle.Tensor]) -> Dict[str, paddle.Tensor]:
        image = inputs["image"]
        if self.data_format == "NHWC":
            inputs = dict(inputs, image=paddle.transpose(image, [0, 2, 3, 1]))
        feats = self.backbone(inputs)
        neck_feats = self.neck(feats, self.for_mot) if self.for_mot else self.neck(feats)
        extra = {}
        if isinstance(neck_feats, dict):
            extra["emb_feats"] = neck_feats["emb_feats"]
            neck_feats = neck_feats["yolo_feats"]

        if self.training:
            losses = self.yolo_head(neck_feats, inputs)
            return {"det_losses": losses, **extra} if self.for_mot else losses

        head_outs = self.yolo_head(neck_feats)
        if self.exclude_post_process:
            return {"head_outs": head_outs, **extra}
        anchors = self.yolo_head.mask_anchors
        sizes = (inputs["im_shape"], inputs["scale_factor"], input_size(image))
        if self.exclude_nms:
            boxes, scores = self.post_process.decode(head_outs, anchors, *sizes)
            return {"boxes": boxes, "scores": scores, **extra}
        bbox, bbox_num, _ = self.post_process(head_outs, anchors, *sizes)
        return {"bbox": bbox, "bbox_num": bbox_num, **extra}

"""EfficientDet architecture: EfficientNet backbone -> BiFPN neck -> EfficientDetHead ->
post_process. Attribute names ``backbone``, ``neck``, ``head`` prefix the state_dict keys
(effdet's ``backbone.*``, ``fpn.*``, ``class_net.*``/``box_net.*`` map onto them, see
``effdet_convert``).
"""
from typing import Dict

import paddle
import paddle.nn as nn

from ..core.registry import register

__all__ = ["EfficientDet"]


@register
class EfficientDet(nn.Layer):
    """``forward(inputs)`` with ``image`` [N,3,H,W] float32 (normalized), ``im_shape`` [N,2]
    (h, w of the network input) and ``scale_factor`` [N,2] (input / original, y then x); in
    training also ``gt_bbox`` [N,K,4] (xyxy input pixels, padded rows ignored by class -1 or
    zero area) and ``gt_class`` [N,K,1].

    Training -> dict of losses incl. ``loss``. Eval -> ``{'bbox': [M,6], 'bbox_num': [N]}``
    (class, score, x1,y1,x2,y2 in original-image pixels). ``exclude_post_process`` ->
    ``{'cls_outs': [...], 'box_outs': [...]}`` (per-level raw maps); ``exclude_nms`` ->
    ``{'boxes': [N,A,4], 'scores': [N,nc,A]}``, every anchor decoded (no top-k, no NMS).
    """

    def __init__(self, backbone: nn.Layer, neck: nn.Layer, head: nn.Layer, post_process=None):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.post_process = post_process
        self.exclude_post_process = False
        self.exclude_nms = False

    def forward(self, inputs: Dict[str, paddle.Tensor]) -> Dict[str, paddle.Tensor]:
        feats = self.neck(self.backbone(inputs))
        if self.training:
            return self.head(feats, inputs)
        cls_outs, box_outs = self.head(feats)
        if self.exclude_post_process or self.post_process is None:
            return {"cls_outs": cls_outs, "box_outs": box_outs}
        anchors = self.head.anchors.boxes(inputs["image"].shape[2:])
        if self.exclude_nms:
            boxes, scores = self.post_process.decode(cls_outs, box_outs, anchors,
                                                     inputs["scale_factor"], inputs.get("im_shape"))
            return {"boxes": boxes, "scores": scores}
        bbox, bbox_num = self.post_process(cls_outs, box_outs, anchors, inputs["scale_factor"],
                                           inputs.get("im_shape"))
        return {"bbox": bbox, "bbox_num": bbox_num}

"""YOLOv4 architecture (YOLOv4, YOLOv4-tiny, Scaled-YOLOv4): backbone → neck → YOLOv4Head →
post_process, as YOLOv3, except that the decode gets the head's per-level [yolo] facts
(``YOLOv4Head.levels``: anchors, scale_x_y, new_coords) instead of bare anchors.

``to_darknet(g)`` describes the whole model as darknet layers, in darknet's order (see
``ppdet_lite.darknet.graph``).
"""
from typing import Dict, List

import paddle

from ..core.registry import register
from .architecture import YOLOv3, input_size

__all__ = ["YOLOv4"]


@register
class YOLOv4(YOLOv3):
    """Inputs and outputs as ``YOLOv3`` (``image``, ``im_shape``, ``scale_factor``; eval →
    ``bbox`` [M,6], ``bbox_num`` [N]; ``exclude_post_process`` / ``exclude_nms`` for export)."""

    def forward(self, inputs: Dict[str, paddle.Tensor]) -> Dict[str, paddle.Tensor]:
        feats = self.neck(self.backbone(inputs))
        if self.training:
            return self.yolo_head(feats, inputs)
        head_outs = self.yolo_head(feats)
        if self.exclude_post_process:
            return {"head_outs": head_outs}
        levels = self.yolo_head.levels
        sizes = (inputs["im_shape"], inputs["scale_factor"], input_size(inputs["image"]))
        if self.exclude_nms:
            boxes, scores = self.post_process.decode(head_outs, levels, *sizes)
            return {"boxes": boxes, "scores": scores}
        bbox, bbox_num, _ = self.post_process(head_outs, levels, *sizes)
        return {"bbox": bbox, "bbox_num": bbox_num}

    def to_darknet(self, g) -> List[int]:
        """Emit every layer into the darknet graph ``g``; returns the [yolo] layer indices."""
        yolos: Dict[int, int] = {}

        def emit_head(level: int, src: int) -> None:
            yolos[level] = self.yolo_head.to_darknet(g, level, src)

        outs = self.neck.to_darknet(g, self.backbone.to_darknet(g), emit_head)
        for level in reversed(range(len(outs))):  # heads after the neck: shallowest first
            if level not in yolos:
                emit_head(level, outs[level])
        return [yolos[i] for i in range(len(outs))]

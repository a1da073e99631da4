"""Detection metrics."""
from .coco_metric import COCOMetric, coco_eval

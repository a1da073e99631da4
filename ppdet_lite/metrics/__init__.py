"""Detection metrics: COCO (pycocotools), VOC (11point / integral), per-class reports."""
from .coco_metric import COCOMetric, coco_eval
from .plots import ConfusionMatrix, classwise_report
from .voc_metric import VOCMetric

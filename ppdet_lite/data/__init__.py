"""Data: datasets, transforms, target assignment and the loader -- and the one sample contract.

A *record* (what a dataset's ``parse_dataset`` stores) and a *sample* (what transforms pass on)
are dicts with PaddleDetection's keys. ``N`` = boxes in the image, ``M`` = ``PadBox.num_max_boxes``.

=============  ==============  ==========================================================
key            dtype, shape    meaning
=============  ==============  ==========================================================
im_file        str             image path (records only: ``Decode`` reads and pops it)
im_id          int64 [1]       image id (COCO ``id``; VOC ``<id>`` or running index)
h, w           number          original image height / width in pixels (dropped at batching)
image          uint8 HWC RGB   after ``Decode``; float32 HWC after colour/geometric ops and
                               ``NormalizeImage``; float32 CHW after ``Permute``
im_shape       float32 [2]     (h, w) of the current (network input) image; after
                               ``LetterBoxResize`` of its content, without the padding
scale_factor   float32 [2]     (scale_y, scale_x): current (content) size / original size
gt_bbox        float32 [N,4]   x1, y1, x2, y2 in pixels of the current image; after
                               ``NormalizeBox`` fractions of its w/h; after ``BboxXYXY2XYWH``
                               cx, cy, w, h; after ``PadBox`` [M,4] zero-padded
gt_class       int32 [N,1]     class id 0..C-1 ([M] after ``PadBox``)
gt_score       float32 [N,1]   box weight, 1 or the Mixup factor ([M] after ``PadBox``)
is_crowd       int32 [N,1]     COCO crowd flag ([M] after ``PadBox``)
difficult      int32 [N,1]     VOC difficult flag ([M] after ``PadBox``)
target{i}      float32         [na_i, 6+C, H/ds_i, W/ds_i] YOLO targets of level i
                               (``Gt2YoloTarget``, which pops gt_class and gt_score): tx, ty,
                               tw, th, 2-w*h, gt_score, one-hot classes
=============  ==============  ==========================================================

Coordinates are continuous pixels: a box covering pixel columns 10..19 is x1=10, x2=20.
A batch (``build_dataloader``) stacks every key along a new first axis N.
"""
from . import batch_transforms, mosaic, transforms, transforms_geometry  # noqa: F401  (ops)
from .coco import COCODataSet
from .dataset import DetDataset
from .image_folder import ImageFolder
from .loader import build_dataloader, DetLoader
from .shapes import ShapesDataSet, make_shapes_dataset
from .voc import VOCDataSet

__all__ = ["DetDataset", "COCODataSet", "VOCDataSet", "ImageFolder", "ShapesDataSet",
           "make_shapes_dataset", "build_dataloader", "DetLoader"]

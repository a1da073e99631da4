"""VOCDataSet: PascalVOC list file (``image xml`` per line) + xml annotations -> records.

As PaddleDetection: paths in the list are relative to ``dataset_dir/image_dir``; ``label_list``
(one class name per line, relative to ``dataset_dir``) gives class ids in line order, the 20
VOC classes when unset; boxes are clipped to [0, w-1] x [0, h-1] and dropped when empty; images
whose xml has no object are kept only with ``allow_empty``; ``im_id`` is the xml ``<id>`` or the
running count. Records carry ``gt_score`` = 1 and ``difficult``.
"""
import os
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional

import numpy as np

from ..core.errors import DatasetError
from ..core.registry import register
from ..utils.logger import get_logger
from .coco import COCODataSet
from .dataset import DetDataset

logger = get_logger(__name__)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
               "sheep", "sofa", "train", "tvmonitor")


def read_label_list(path: str, key: str = "label_list") -> List[str]:
    if not os.path.isfile(path):
        raise DatasetError(f"label list not found: {path}; set {key} (relative to dataset_dir)")
    return [line.strip() for line in read_text_lines(path, "save it as UTF-8 text, one class name a line")
            if line.strip()]


def read_text_lines(path: str, fix: str) -> List[str]:
    """The lines of a UTF-8 text file; ``DatasetError`` naming the file and the byte otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start}); {fix}") from None


@register
class VOCDataSet(DetDataset):
    """VOC records; ``cname2cid`` after ``parse_dataset()``."""

    def __init__(self, dataset_dir: Optional[str] = None, image_dir: Optional[str] = None,
                 anno_path: Optional[str] = None, data_fields=("image",), sample_num: int = -1,
                 label_list: Optional[str] = None, allow_empty: bool = False,
                 empty_ratio: float = 1.0, repeat: int = 1):
        super().__init__(dataset_dir, image_dir, anno_path, data_fields, sample_num, repeat)
        self.label_list, self.allow_empty, self.empty_ratio = label_list, allow_empty, empty_ratio
        self.cname2cid: Dict[str, int] = {}

    _sample_empty = COCODataSet._sample_empty

    def get_label_list(self) -> List[str]:
        """Class names indexed by class id."""
        if self.label_list:
            return read_label_list(os.path.join(self.dataset_dir, self.label_list))
        return list(VOC_CLASSES)

    @property
    def num_classes(self) -> int:
        return len(self.get_label_list())

    def _parse_xml(self, xml_file: str, ct: int, names: List[str]):
        try:
            root = ET.parse(xml_file).getroot()
            im_id = int(root.find("id").text) if root.find("id") is not None else ct
            im_w = float(root.find("size").find("width").text)
            im_h = float(root.find("size").find("height").text)
            objs = root.findall("object")
            cnames = [o.find("name").text.strip() for o in objs]
            coords = np.array([[float(o.find("bndbox").find(k).text)
                                for k in ("xmin", "ymin", "xmax", "ymax")] for o in objs],
                              np.float64).reshape(-1, 4)
            diff = np.array([int(o.find("difficult").text) if o.find("difficult") is not None
                             else 0 for o in objs], np.int32)
        except (ET.ParseError, AttributeError, ValueError, TypeError) as e:
            raise DatasetError(f"{xml_file}: malformed VOC xml ({type(e).__name__}: {e}); it needs "
                               "<size><width>/<height> and <object><name>/<bndbox>") from e
        unknown = sorted({c for c in cnames if c not in self.cname2cid})
        if unknown:
            raise DatasetError(f"{xml_file}: class {unknown[0]!r} is not in the label list "
                               f"{names} ({self.label_list or 'the 20 VOC classes'}); add it to "
                               "label_list or fix the xml")
        return im_id, im_w, im_h, cnames, coords, diff

    def parse_dataset(self) -> None:
        anno_path = os.path.join(self.dataset_dir, self.anno_path or "")
        if not os.path.isfile(anno_path):
            raise DatasetError(f"VOC list file not found: {anno_path}; set dataset_dir / anno_path")
        image_dir = os.path.join(self.dataset_dir, self.image_dir)
        names = self.get_label_list()
        self.cname2cid = {n: i for i, n in enumerate(names)}
        records, empty, ct, skipped, bad, good = [], [], 0, 0, 0, 0
        lines = [ln.split() for ln in read_text_lines(anno_path, "save it as UTF-8 text, one 'image xml' a line")
                 if ln.strip()]
        for parts in lines:
            if len(parts) < 2:
                raise DatasetError(f"{anno_path}: line {' '.join(parts)!r} must be 'image xml'")
            img_file, xml_file = (os.path.join(image_dir, p) for p in parts[:2])
            if not os.path.exists(img_file) or not os.path.isfile(xml_file):
                skipped += 1
                continue
            im_id, im_w, im_h, cnames, xyxy, diff = self._parse_xml(xml_file, ct, names)
            if im_w < 0 or im_h < 0:
                skipped += 1
                continue
            xyxy[:, :2] = np.maximum(xyxy[:, :2], 0)
            xyxy[:, 2] = np.minimum(xyxy[:, 2], im_w - 1)
            xyxy[:, 3] = np.minimum(xyxy[:, 3], im_h - 1)
            ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
            bad += int((~ok).sum())
            n = int(ok.sum())
            good += n
            gt = {"gt_bbox": xyxy[ok].astype(np.float32),
                  "gt_class": np.array([self.cname2cid[c] for c, k in zip(cnames, ok) if k],
                                       np.int32).reshape(n, 1),
                  "gt_score": np.ones((n, 1), np.float32),
                  "difficult": diff[ok].reshape(n, 1)}
            rec = {"im_file": img_file, "im_id": np.array([im_id], np.int64), "h": im_h,
                   "w": im_w} if "image" in self.data_fields else {}
            rec.update({k: v for k, v in gt.items() if k in self.data_fields})
            (records if cnames else empty).append(rec)
            ct += 1
            if 0 < self.sample_num <= ct:
                break
        if ct == 0:
            raise DatasetError(f"no usable VOC record in {anno_path} (image_dir {image_dir!r})")
        if not self.allow_empty and good == 0:
            raise DatasetError(f"no usable box in {anno_path}: all {bad} boxes of its {ct} records are invalid "
                               "(xmax <= xmin or ymax <= ymin after clipping to the image); fix the xml files' "
                               "<bndbox>, or set allow_empty: true")
        if skipped or bad:
            logger.warning(f"{anno_path}: skipped {skipped} entries (missing image/xml or bad size) "
                           f"and {bad} empty boxes")
        if self.allow_empty and empty:
            records += self._sample_empty(empty, len(records))
        self.roidbs = records

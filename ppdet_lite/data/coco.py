"""COCODataSet: COCO-format json + image folder -> detection records (PaddleDetection's arguments).

Labels: category ids map to contiguous class ids 0..C-1 in the order of the json's ``categories``
list, as pycocotools' ``getCatIds()`` (and so PaddleDetection) returns them; for COCO itself that
is sorted id order. Per image, annotations are kept in file order. Skipped, as PaddleDetection:
``ignore`` / crowd (unless ``load_crowd``) / all-zero boxes, boxes with area <= 0 or no extent,
images whose file is missing, and, unless ``allow_empty``, images left without boxes. Boxes
reaching outside the image are clipped to it. Every skip is counted in one warning.
"""
import json
import os
import random
from typing import Dict, List, Optional

import numpy as np

from ..core.errors import DatasetError
from ..core.registry import register
from ..utils.logger import get_logger
from .dataset import DetDataset

logger = get_logger(__name__)


def read_coco_json(path: str, key_hint: str = "anno_path") -> dict:
    if not os.path.isfile(path):
        raise DatasetError(f"annotation file not found: {path}; set dataset_dir / {key_hint} of "
                           "the dataset section (TrainDataset / EvalDataset / TestDataset)")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: not a valid COCO json ({e})") from e
    if not isinstance(data, dict) or "images" not in data:
        raise DatasetError(f"{path}: a COCO json needs an 'images' list (and 'annotations', "
                           "'categories')")
    return data


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_coco_schema(data: dict, path: str) -> None:
    """``DatasetError`` naming the first entry of ``images`` / ``categories`` / ``annotations``
    that lacks a field pycocotools and this loader need, or has it in the wrong type."""
    def need(entry, i: int, kind: str, field: str, ok, what: str) -> None:
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: {kind}[{i}] is {type(entry).__name__}, not an object; every entry of "
                               f"{kind!r} must be a JSON object ({{...}})")
        if field not in entry:
            raise DatasetError(f"{path}: {kind}[{i}] (id {entry.get('id')!r}) has no {field!r}; "
                               f"every {kind[:-1]} needs {what}")
        if not ok(entry[field]):
            raise DatasetError(f"{path}: {kind}[{i}] (id {entry.get('id')!r}): {field} {entry[field]!r} "
                               f"must be {what}")

    for key in ("images", "annotations", "categories"):
        if key in data and not isinstance(data[key], list):
            raise DatasetError(f"{path}: {key!r} must be a list, got {type(data[key]).__name__}; a COCO json "
                               "holds lists of objects under 'images', 'annotations' and 'categories'")
    for i, im in enumerate(data["images"]):
        need(im, i, "images", "id", _is_id, "an integer id")
        need(im, i, "images", "file_name", lambda v: isinstance(v, str) and v, "a file_name string")
    for i, c in enumerate(data.get("categories", [])):
        need(c, i, "categories", "id", _is_id, "an integer id")
    for i, a in enumerate(data.get("annotations", [])):
        need(a, i, "annotations", "image_id", _is_id, "an integer image_id")
        need(a, i, "annotations", "category_id", _is_id, "an integer category_id")
        if "bbox" in a:
            need(a, i, "annotations", "bbox", lambda v: isinstance(v, list) and len(v) in (0, 4) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
                "a list of 4 numbers [x, y, width, height]")


def coco_categories(data: dict) -> Dict[int, str]:
    """category id -> name, in json order (duplicates keep their first position)."""
    cats: Dict[int, str] = {}
    for c in data.get("categories", []):
        cats[int(c["id"])] = c.get("name", str(c["id"]))
    return cats


@register
class COCODataSet(DetDataset):
    """COCO json records. After ``parse_dataset()``: ``roidbs``, ``catid2clsid``, ``cname2cid``."""

    def __init__(self, dataset_dir: Optional[str] = None, image_dir: Optional[str] = None,
                 anno_path: Optional[str] = None, data_fields=("image",), sample_num: int = -1,
                 load_crowd: bool = False, allow_empty: bool = False, empty_ratio: float = 1.0,
                 repeat: int = 1):
        super().__init__(dataset_dir, image_dir, anno_path, data_fields, sample_num, repeat)
        self.load_crowd = load_crowd
        self.allow_empty = allow_empty
        self.empty_ratio = empty_ratio
        self.catid2clsid: Dict[int, int] = {}
        self.cname2cid: Dict[str, int] = {}

    # --- labels -------------------------------------------------------------------------------
    def _set_categories(self, cats: Dict[int, str]) -> None:
        self.catid2clsid = {cid: i for i, cid in enumerate(cats)}
        self.cname2cid = {name: self.catid2clsid[cid] for cid, name in cats.items()}

    def get_label_list(self) -> List[str]:
        """Class names indexed by class id."""
        if not self.catid2clsid:
            self._set_categories(coco_categories(read_coco_json(self.get_anno())))
        return sorted(self.cname2cid, key=self.cname2cid.get)

    @property
    def num_classes(self) -> int:
        return len(self.get_label_list())

    @property
    def clsid2catid(self) -> Dict[int, int]:
        return {v: k for k, v in self.catid2clsid.items()}

    # --- parsing ------------------------------------------------------------------------------
    def _sample_empty(self, records: List[dict], num: int) -> List[dict]:
        if self.empty_ratio < 0.0 or self.empty_ratio >= 1.0:
            return records
        n = min(int(num * self.empty_ratio / (1 - self.empty_ratio)), len(records))
        return random.sample(records, n)

    def parse_dataset(self) -> None:
        anno_path = self.get_anno()
        if anno_path is None or not anno_path.endswith(".json"):
            raise DatasetError(f"COCODataSet needs anno_path to be a .json file, got {anno_path!r}")
        image_dir = os.path.join(self.dataset_dir, self.image_dir)
        if self.image_dir and not os.path.isdir(image_dir):
            raise DatasetError(f"image directory not found: {image_dir}; set dataset_dir / "
                               "image_dir of the dataset section")
        data = read_coco_json(anno_path)
        check_coco_schema(data, anno_path)
        self._set_categories(coco_categories(data))
        images: Dict[int, dict] = {}
        for im in data["images"]:
            images.setdefault(im["id"], im)
        duplicates = len(data["images"]) - len(images)
        orphans = sum(a["image_id"] not in images for a in data.get("annotations", []))
        if duplicates or orphans:
            logger.warning(f"{anno_path}: {duplicates} duplicate image ids (the first entry of each kept) and "
                           f"{orphans} annotations of image ids not in 'images' (dropped)")
        anns = self._annotation_arrays(data.get("annotations", []), anno_path)
        load_image_only = "annotations" not in data
        if load_image_only:
            logger.warning(f"{anno_path} has no 'annotations': loading images only")

        want = set(self.data_fields)
        records, empty, skipped_img = [], [], 0
        bad_boxes = anns["n_bad"]
        for img_id in sorted(images):
            im = images[img_id]
            im_w, im_h = float(im.get("width", -1)), float(im.get("height", -1))
            im_path = os.path.join(image_dir, im["file_name"]) if image_dir else im["file_name"]
            if not os.path.exists(im_path) or im_w < 0 or im_h < 0:
                skipped_img += 1
                continue
            rec = {"im_file": im_path, "im_id": np.array([img_id], np.int64),
                   "h": im_h, "w": im_w} if "image" in want else {}
            is_empty = False
            if not load_image_only:
                lo, hi = anns["ranges"].get(img_id, (0, 0))
                boxes = anns["bbox"][lo:hi].copy()
                boxes[:, 0::2] = boxes[:, 0::2].clip(0, im_w)
                boxes[:, 1::2] = boxes[:, 1::2].clip(0, im_h)
                keep = ((boxes[:, 2] - boxes[:, 0]) > 1e-5) & ((boxes[:, 3] - boxes[:, 1]) > 1e-5)
                bad_boxes += int((~keep).sum())
                idx = np.arange(lo, hi)[keep]
                if len(idx) == 0 and not self.allow_empty:
                    continue
                is_empty = len(idx) == 0
                gt = {"gt_bbox": boxes[keep].astype(np.float32),
                      "gt_class": anns["cls"][idx].reshape(-1, 1),
                      "is_crowd": anns["crowd"][idx].reshape(-1, 1)}
                if "gt_poly" in want:
                    gt["gt_poly"] = [anns["segm"][i] for i in idx]
                rec.update({k: v for k, v in gt.items() if k in want})
            (empty if is_empty else records).append(rec)
            if 0 < self.sample_num <= len(records) + len(empty):
                break
        if not records and not empty:
            if skipped_img == len(images):
                raise DatasetError(f"no usable image in {anno_path}: none of its {len(images)} file_name "
                                   f"entries exists under image_dir {image_dir!r} (or has a valid size); "
                                   "check dataset_dir / image_dir")
            raise DatasetError(f"no usable image in {anno_path}: {len(images) - skipped_img} images exist but "
                               f"none has a valid box ({bad_boxes} invalid boxes: area <= 0 or outside the "
                               "image); fix the annotations' bbox [x, y, w, h], or set allow_empty: true")
        if skipped_img or bad_boxes:
            logger.warning(f"{anno_path}: skipped {skipped_img} images (missing file or bad size) "
                           f"and {bad_boxes} invalid boxes (area <= 0 or outside the image)")
        logger.info(f"{anno_path}: {len(records) + len(empty)} images, "
                    f"{len(self.catid2clsid)} classes")
        if self.allow_empty and empty:
            records += self._sample_empty(empty, len(records))
        self.roidbs = records

    def _annotation_arrays(self, anns: List[dict], path: str) -> dict:
        """Usable annotations as arrays sorted (stably) by image id, plus per-image ranges."""
        keep, n_bad = [], 0
        for a in anns:
            if a.get("ignore", False) or "bbox" not in a or not any(a["bbox"]):
                continue
            if not self.load_crowd and a.get("iscrowd", 0):
                continue
            if a["category_id"] not in self.catid2clsid:
                raise DatasetError(f"{path}: annotation {a.get('id')} has category_id "
                                   f"{a['category_id']} missing from 'categories'; add that category or fix "
                                   "the annotation")
            keep.append(a)
        n = len(keep)
        xywh = np.array([a["bbox"] for a in keep], np.float64).reshape(n, 4)
        area = np.array([a.get("area", 1.0) for a in keep], np.float64)
        xyxy = np.round(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1), 3)
        ok = (area > 0) & (xywh[:, 2] > 1e-5) & (xywh[:, 3] > 1e-5)
        n_bad += int((~ok).sum())
        img = np.array([a["image_id"] for a in keep], np.int64)[ok]
        order = np.argsort(img, kind="stable")
        img = img[order]
        sel = np.flatnonzero(ok)[order]
        starts = np.flatnonzero(np.r_[True, img[1:] != img[:-1]]) if len(img) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(img)]
        return {
            "bbox": xyxy[sel].astype(np.float32),
            "cls": np.array([self.catid2clsid[keep[i]["category_id"]] for i in sel], np.int32),
            "crowd": np.array([keep[i].get("iscrowd", 0) for i in sel], np.int32),
            "segm": [keep[i].get("segmentation") for i in sel] if "gt_poly" in self.data_fields else None,
            "ranges": {int(img[s]): (int(s), int(e)) for s, e in zip(starts, ends)},
            "n_bad": n_bad,
        }

"""Synthetic "shapes" detection data: COCO json + jpg images, generated from a seed, no download.

Layout written by ``make_shapes_dataset(out_dir, ...)``::

    out_dir/train/000001.jpg ...            out_dir/annotations/instances_train.json
    out_dir/val/000001.jpg ...              out_dir/annotations/instances_val.json

Four classes of filled shapes (circle, rectangle, triangle, diamond), 1-6 per image, each 12-60 %
of the image side, random colours on gradient + noise backgrounds; later shapes may partly cover
earlier ones (every box keeps at least half of itself visible). Image ``i`` of a split depends
only on (seed, split name, i), so a larger set extends a smaller one. ``ShapesDataSet`` is a
``COCODataSet`` that writes its split on first use, atomically and safely under concurrent starts.
"""
import json
import os
import shutil
import tempfile
import zlib
from typing import Dict, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..core.errors import DatasetError
from ..core.registry import register
from ..utils.filelock import file_lock
from ..utils.logger import get_logger
from .coco import COCODataSet

logger = get_logger(__name__)

CLASSES = ("circle", "rectangle", "triangle", "diamond")
_MARKER = ".ppdet_lite_shapes"


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Linear gradient between two random colours along a random direction, plus blotchy noise:
    HWC uint8 (built at half resolution and upsampled, which is 4x cheaper)."""
    hh, hw = max(h // 2, 1), max(w // 2, 1)
    angle = rng.uniform(0, 2 * np.pi)
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    ys, xs = np.linspace(0, 1, hh, dtype=np.float32), np.linspace(0, 1, hw, dtype=np.float32)
    t = np.cos(angle) * xs[None, :] + np.sin(angle) * ys[:, None]
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    im = c0 + t[..., None] * (c1 - c0)
    im += rng.standard_normal((hh, hw, 3), dtype=np.float32) * np.float32(rng.uniform(0, 20))
    im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(im, 0, 255).astype(np.uint8)


def _shape_polygon(kind: int, x1: int, y1: int, x2: int, y2: int, rng) -> np.ndarray:
    """Vertices [K,2] (int) of a polygonal shape filling the box exactly."""
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    if kind == 1:
        return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
    if kind == 2:
        apex = int(x1 + rng.uniform(0.2, 0.8) * (x2 - x1))
        return np.array([[x1, y2], [x2, y2], [apex, y1]]) if rng.uniform() < 0.5 else \
            np.array([[x1, y1], [x2, y1], [apex, y2]])
    return np.array([[cx, y1], [x2, cy], [cx, y2], [x1, cy]])


def render_image(rng: np.random.Generator, h: int, w: int, min_objects: int = 1,
                 max_objects: int = 6, min_scale: float = 0.12, max_scale: float = 0.6,
                 shape_classes: int = len(CLASSES)):
    """One image: (HWC uint8 RGB, boxes [N,4] xyxy pixels float, classes [N] int, areas [N],
    polygons list of flat [x0,y0,...] lists)."""
    im = _background(rng, h, w)
    side = min(h, w)
    boxes, classes, areas, polys = [], [], [], []
    covered = np.zeros(0)  # area of each placed box hidden by later ones (upper bound)
    n_target = int(rng.integers(min_objects, max_objects + 1))
    for _ in range(n_target * 10):
        if len(boxes) == n_target:
            break
        kind = int(rng.integers(shape_classes))  # the first ``shape_classes`` of CLASSES
        bw = int(side * rng.uniform(min_scale, max_scale))
        bh = bw if kind == 0 else int(np.clip(bw * rng.uniform(0.6, 1.6), side * min_scale, side * max_scale))
        x1, y1 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        box = np.array([x1, y1, x1 + bw + 1, y1 + bh + 1], np.float32)
        if boxes:  # keep at least half of every earlier box visible, and the new one distinct
            prev = np.array(boxes)
            iw = np.clip(np.minimum(prev[:, 2], box[2]) - np.maximum(prev[:, 0], box[0]), 0, None)
            ih = np.clip(np.minimum(prev[:, 3], box[3]) - np.maximum(prev[:, 1], box[1]), 0, None)
            prev_area = (prev[:, 2] - prev[:, 0]) * (prev[:, 3] - prev[:, 1])
            if ((covered + iw * ih) / prev_area).max() > 0.5:  # summed overlaps: conservative
                continue
            covered += iw * ih
        colour = rng.uniform(0, 255, 3)
        local = np.asarray(cv2.mean(im[y1:y1 + bh + 1, x1:x1 + bw + 1])[:3])
        if np.abs(colour - local).sum() < 150:
            colour = 255.0 - local + rng.uniform(-30, 30, 3)
        colour = tuple(float(c) for c in np.clip(colour, 0, 255))
        if kind == 0:
            r = bw // 2
            cx, cy = x1 + r, y1 + r
            box = np.array([cx - r, cy - r, cx + r + 1, cy + r + 1], np.float32)
            cv2.circle(im, (cx, cy), r, colour, -1, cv2.LINE_AA)
            ang = np.linspace(0, 2 * np.pi, 16, endpoint=False)
            poly = np.stack([cx + 0.5 + r * np.cos(ang), cy + 0.5 + r * np.sin(ang)], 1)
            area = np.pi * r * r
        else:
            pts = _shape_polygon(kind, x1, y1, x1 + bw, y1 + bh, rng)
            cv2.fillPoly(im, [pts.astype(np.int32)], colour, cv2.LINE_AA)
            poly = pts + 0.5
            area = bw * bh / (1.0 if kind == 1 else 2.0)
        boxes.append(box)
        covered = np.append(covered, 0.0)
        classes.append(kind)
        areas.append(float(area))
        polys.append([round(float(v), 2) for v in poly.reshape(-1)])
    return im, np.array(boxes, np.float32).reshape(-1, 4), np.array(classes, np.int64), areas, polys


def _split_seed(seed: int, split: str) -> int:
    return zlib.crc32(f"{seed}/{split}".encode()) & 0x7FFFFFFF


def write_split(out_dir: str, image_dir: str, anno_path: str, num_images: int,
                image_size: Union[int, Sequence[int]] = 256, seed: int = 0,
                split: Optional[str] = None, **render_kw) -> str:
    """Write ``num_images`` images into ``out_dir/image_dir`` and their COCO json at
    ``out_dir/anno_path`` (no atomicity; see ``ensure_split``). Returns the json path."""
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    split = split or os.path.basename(os.path.normpath(image_dir)) or "images"
    img_dir = os.path.join(out_dir, image_dir)
    os.makedirs(img_dir, exist_ok=True)
    images, annos = [], []
    base = _split_seed(seed, split)
    for i in range(num_images):
        rng = np.random.default_rng([base, i])
        im, boxes, classes, areas, polys = render_image(rng, h, w, **render_kw)
        name = f"{i + 1:06d}.jpg"
        cv2.imwrite(os.path.join(img_dir, name), im[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for box, c, a, p in zip(boxes.tolist(), classes.tolist(), areas, polys):
            annos.append({"id": len(annos) + 1, "image_id": i + 1, "category_id": c + 1,
                          "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                          "area": round(a, 2), "iscrowd": 0, "segmentation": [p]})
    params = {"num_images": num_images, "image_size": [h, w], "seed": seed, **render_kw}
    data = {"info": {"description": f"ppdet_lite synthetic shapes, split {split}, seed {seed}",
                     "generator": params},
            "images": images, "annotations": annos,
            "categories": [{"id": k + 1, "name": n, "supercategory": "shape"}
                           for k, n in enumerate(CLASSES[:render_kw.get("shape_classes", len(CLASSES))])]}
    path = os.path.join(out_dir, anno_path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f)
    with open(os.path.join(img_dir, _MARKER), "w") as f:
        f.write(split)
    return path


def _check_params(path: str, num_images: int, image_size, seed: int, render_kw: dict) -> None:
    """An existing split must have been generated with the requested settings."""
    with open(path) as f:
        stored = json.load(f).get("info", {}).get("generator")
    if stored is None:
        return  # not written by this generator: a user's own data in the same layout
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    want = {"num_images": num_images, "image_size": [h, w], "seed": seed, **render_kw}
    diff = {k: (stored.get(k), v) for k, v in want.items() if stored.get(k) != v}
    if diff:
        raise DatasetError(f"{path} was generated with other settings ({', '.join(f'{k}: {a} there, {b} asked' for k, (a, b) in diff.items())}); "
                           f"delete {os.path.dirname(os.path.dirname(path))} to regenerate it, or set another dataset_dir")


def ensure_split(out_dir: str, image_dir: str, anno_path: str, num_images: int,
                 image_size: Union[int, Sequence[int]] = 256, seed: int = 0, **render_kw) -> str:
    """``write_split`` unless ``out_dir/anno_path`` exists. Generates into a temp dir and renames
    (images first, the json last, so the json marks completion); an flock on
    ``out_dir/.shapes.lock`` makes a second process wait and then reuse the result."""
    if not image_dir:
        raise DatasetError("ShapesDataSet needs a non-empty image_dir (e.g. 'train')")
    final_json = os.path.join(out_dir, anno_path)
    if os.path.isfile(final_json):
        _check_params(final_json, num_images, image_size, seed, render_kw)
        return final_json
    os.makedirs(out_dir, exist_ok=True)
    with file_lock(os.path.join(out_dir, ".shapes.lock")):
        if os.path.isfile(final_json):
            return final_json
        final_img = os.path.join(out_dir, image_dir)
        if os.path.exists(final_img):
            if not os.path.exists(os.path.join(final_img, _MARKER)):
                raise DatasetError(f"{final_img} exists but {final_json} does not: remove the "
                                   "folder or point anno_path at its annotations")
            shutil.rmtree(final_img)  # left by an interrupted run
        logger.info(f"generating {num_images} shapes images into {final_img}")
        tmp = tempfile.mkdtemp(prefix=".tmp_shapes_", dir=out_dir)
        try:
            write_split(tmp, "images", "anno.json", num_images, image_size, seed,
                        split=os.path.basename(os.path.normpath(image_dir)), **render_kw)
            os.makedirs(os.path.dirname(final_img) or ".", exist_ok=True)
            os.rename(os.path.join(tmp, "images"), final_img)
            os.makedirs(os.path.dirname(final_json) or ".", exist_ok=True)
            os.replace(os.path.join(tmp, "anno.json"), final_json)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final_json


def make_shapes_dataset(out_dir: str, num_train: int = 500, num_val: int = 100,
                        image_size: Union[int, Sequence[int]] = 256, seed: int = 0,
                        **render_kw) -> Dict[str, str]:
    """Write the train and val splits (skipping any that exists). Returns split -> json path."""
    return {split: ensure_split(out_dir, split, f"annotations/instances_{split}.json", n,
                                image_size, seed, **render_kw)
            for split, n in (("train", num_train), ("val", num_val)) if n > 0}


@register
class ShapesDataSet(COCODataSet):
    """COCODataSet over a shapes split, generated on first use when its json is missing.

    ``num_images`` images of ``image_size`` px from ``seed``; the split name is the image_dir's
    last component, so train and val differ even with one seed."""

    def __init__(self, dataset_dir: str = "dataset/shapes", image_dir: str = "train",
                 anno_path: str = "annotations/instances_train.json", data_fields=("image",),
                 sample_num: int = -1, load_crowd: bool = False, allow_empty: bool = False,
                 empty_ratio: float = 1.0, repeat: int = 1, num_images: int = 500,
                 image_size: Union[int, Tuple[int, int]] = 256, seed: int = 0,
                 min_objects: int = 1, max_objects: int = 6, min_scale: float = 0.12,
                 max_scale: float = 0.6, shape_classes: int = 4):
        super().__init__(dataset_dir, image_dir, anno_path, data_fields, sample_num, load_crowd,
                         allow_empty, empty_ratio, repeat)
        self.num_images, self.image_size, self.seed = num_images, image_size, seed
        if not 3 <= shape_classes <= len(CLASSES):
            raise DatasetError(f"ShapesDataSet: shape_classes must be 3 or 4 ({CLASSES}), got {shape_classes}")
        self.render_kw = dict(min_objects=min_objects, max_objects=max_objects,
                              min_scale=min_scale, max_scale=max_scale, shape_classes=shape_classes)

    def check_or_download_dataset(self) -> None:
        ensure_split(self.dataset_dir, self.image_dir, self.anno_path, self.num_images,
                     self.image_size, self.seed, **self.render_kw)

    def parse_dataset(self) -> None:
        self.check_or_download_dataset()
        super().parse_dataset()

    def get_label_list(self):
        if not self.catid2clsid and not os.path.isfile(self.get_anno()):
            return list(CLASSES[:self.render_kw["shape_classes"]])
        return super().get_label_list()

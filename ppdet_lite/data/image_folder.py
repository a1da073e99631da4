"""ImageFolder: images to run inference on (no annotations); ``anno_path`` only names the classes.

``set_images([...])`` takes image files and/or folders (searched recursively for .jpg/.jpeg/
.png/.bmp, sorted). Records are ``{im_id: [k], im_file}``; ``get_imid2path()`` maps back.
``get_label_list()`` reads class names from ``anno_path``: a COCO json (its categories) or a
text file with one name per line.
"""
import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ..core.errors import DatasetError
from ..core.registry import register
from ..core.unimplemented import NotImplementedSetting
from ..runtime.images import IMAGE_EXTS, list_images
from .coco import coco_categories, read_coco_json
from .dataset import DetDataset
from .voc import read_label_list

@register
class ImageFolder(DetDataset):
    # PaddleDetection's ImageFolder takes these too (through **kwargs); they load at their no-op value
    NOT_IMPLEMENTED = {
        "data_fields": NotImplementedSetting(
            (["image"], None), "the record fields to load",
            "ImageFolder records are images only (im_id, im_file); annotations come from a "
            "COCODataSet / VOCDataSet"),
        "use_default_label": NotImplementedSetting(
            (None, False), "name the classes with the default COCO / VOC list",
            "set anno_path to a label list (one name per line) or a COCO json"),
    }

    def __init__(self, dataset_dir: Optional[str] = None, image_dir: Union[str, Sequence[str], None] = None,
                 anno_path: Optional[str] = None, sample_num: int = -1):
        super().__init__(dataset_dir, image_dir, anno_path, ("image",), sample_num)
        self._imid2path: Dict[int, str] = {}

    def get_anno(self) -> Optional[str]:
        if self.anno_path is None:
            return None
        joined = os.path.join(self.dataset_dir, self.anno_path)  # a path outside dataset_dir works too
        return joined if os.path.exists(joined) or not os.path.exists(self.anno_path) else self.anno_path

    def get_label_list(self) -> Optional[List[str]]:
        """Class names from ``anno_path`` (COCO json or label txt), or None without one."""
        path = self.get_anno()
        if path is None:
            return None
        if path.endswith(".json"):
            return list(coco_categories(read_coco_json(path)).values())
        return read_label_list(path, key="anno_path")

    def _load_images(self) -> List[dict]:
        dirs = self.image_dir if isinstance(self.image_dir, (list, tuple)) else [self.image_dir]
        images = []
        for d in dirs:
            cand = d if os.path.exists(d) else os.path.join(self.dataset_dir, d)
            if not os.path.exists(cand):
                raise DatasetError(f"image path not found: {d}; pass existing files or folders")
            images += list_images(cand, recursive=True)
        if self.sample_num > 0:
            images = images[:self.sample_num]
        if not images:
            raise DatasetError(f"no image ({'/'.join(IMAGE_EXTS)}) found in {dirs}")
        self._imid2path = dict(enumerate(images))
        return [{"im_id": np.array([k], np.int64), "im_file": p} for k, p in enumerate(images)]

    def parse_dataset(self) -> None:
        if not self.roidbs:
            self.roidbs = self._load_images()

    def set_images(self, images: Sequence[str]) -> None:
        self.image_dir = list(images)
        self.roidbs = self._load_images()

    def get_imid2path(self) -> Dict[int, str]:
        return self._imid2path

"""DetDataset: the base every dataset shares (records list, lazy parse, transform, Mixup pairing).

A subclass implements ``parse_dataset()`` which fills ``self.roidbs`` with raw records (see the
contract in ``ppdet_lite/data/__init__.py``). The loader calls ``parse_dataset()`` then
``set_transform(fn)``; ``__getitem__`` returns ``fn(record)`` -- or ``fn([record, other])`` while
``epoch < mixup_epoch`` so that the ``Mixup`` op gets its second sample, as PaddleDetection does
(``fn([record, 3 others])`` while ``epoch < mosaic_epoch``, for ``Mosaic``).
"""
import os
from typing import Callable, List, Optional

import numpy as np
from paddle.io import Dataset

from ..core.errors import DatasetError


def copy_record(rec: dict) -> dict:
    """A copy of a record whose arrays may be modified in place by the transforms."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in rec.items()}


class DetDataset(Dataset):
    """Records + sample transform. ``len`` is ``len(roidbs) * repeat``."""

    def __init__(self, dataset_dir: Optional[str] = None, image_dir: Optional[str] = None,
                 anno_path: Optional[str] = None, data_fields=("image",), sample_num: int = -1,
                 repeat: int = 1):
        super().__init__()
        self.dataset_dir = dataset_dir if dataset_dir is not None else ""
        self.image_dir = image_dir if image_dir is not None else ""
        self.anno_path = anno_path
        self.data_fields = list(data_fields)
        self.sample_num = sample_num
        self.repeat = repeat
        self.roidbs: Optional[List[dict]] = None
        self.transform: Callable = lambda s: s
        self.mixup_epoch = -1
        self.mosaic_epoch = -1
        self._epoch = 0

    # --- lifecycle used by the loader -------------------------------------------------------
    def parse_dataset(self) -> None:
        raise NotImplementedError

    def check_or_download_dataset(self) -> None:
        """Hook run before ``parse_dataset`` (ShapesDataSet generates itself here)."""

    def set_transform(self, transform: Callable) -> None:
        self.transform = transform

    def set_kwargs(self, mixup_epoch: int = -1, mosaic_epoch: int = -1, **_) -> None:
        self.mixup_epoch = mixup_epoch
        self.mosaic_epoch = mosaic_epoch

    def set_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def get_anno(self) -> Optional[str]:
        if self.anno_path is None:
            return None
        return os.path.join(self.dataset_dir, self.anno_path)

    # --- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        if self.roidbs is None:
            raise DatasetError(f"{type(self).__name__}: call parse_dataset() before using the "
                               "dataset (build_dataloader does it)")
        return len(self.roidbs) * self.repeat

    def __getitem__(self, idx: int):
        n = len(self.roidbs)
        rec = copy_record(self.roidbs[idx % n])
        if self.mosaic_epoch == 0 or self._epoch < self.mosaic_epoch:  # a group of 4 for Mosaic
            rec = [rec] + [copy_record(self.roidbs[np.random.randint(n)]) for _ in range(3)]
        elif self.mixup_epoch == 0 or self._epoch < self.mixup_epoch:
            rec = [rec, copy_record(self.roidbs[np.random.randint(n)])]
        return self.transform(rec)

"""Datasets and loaders from a config: ``build_dataset``, ``parsed_dataset``, ``build_loader_for``,
``label_list``."""
from typing import Any, Dict, List

from ..core.config import section
from ..core.errors import ConfigError, DatasetError
from ..core.registry import create
from ..utils.logger import get_logger
from .loader import build_dataloader

logger = get_logger(__name__)


def build_dataset(cfg: Dict[str, Any], key: str):
    """``TrainDataset`` / ``EvalDataset`` / ``TestDataset`` from its tagged config section."""
    ds_cfg = section(cfg, key)
    if "name" not in ds_cfg:
        raise ConfigError(f"{cfg.source(key)}: {key} needs a dataset type, e.g. `{key}: !COCODataSet {{...}}`")
    return create(ds_cfg["name"], ds_cfg, where=f"{cfg.source(key)}: {key}")


def parsed_dataset(cfg: Dict[str, Any], key: str):
    """``build_dataset`` with its records read (``roidbs``: ``im_file``, ``im_id``, ...); a
    generated dataset (ShapesDataSet) is made first."""
    dataset = build_dataset(cfg, key)
    dataset.check_or_download_dataset()
    if dataset.roidbs is None:
        dataset.parse_dataset()
    return dataset


def build_loader_for(cfg: Dict[str, Any], dataset_key: str, reader_key: str, mode: str, **kwargs):
    """Dataset + loader; a data error names the config key and file to change."""
    dataset = build_dataset(cfg, dataset_key)
    try:
        loader = build_dataloader(section(cfg, reader_key), dataset, int(cfg.get("num_classes", 80)), mode,
                                  worker_num=cfg.get("worker_num"), **kwargs)
    except DatasetError as e:
        raise DatasetError(f"{e}\n  (from {dataset_key} in {cfg.source(dataset_key)}: point it at your data "
                           f"with -o {dataset_key}.dataset_dir=/path/to/data, or edit that file)") from e
    return dataset, loader


def label_list(cfg: Dict[str, Any]) -> List[str]:
    """Class names from TestDataset (or EvalDataset); ``class_<i>`` when neither gives them."""
    for key in ("TestDataset", "EvalDataset"):
        if not cfg.get(key):
            continue
        try:
            names = build_dataset(cfg, key).get_label_list()
            if names:
                return list(names)
        except (DatasetError, OSError, AttributeError) as e:
            logger.warning(f"{key} gives no label list ({e}); trying the next source")
    return [f"class_{i}" for i in range(int(cfg.get("num_classes", 80)))]

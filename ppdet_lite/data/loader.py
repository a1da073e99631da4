"""build_dataloader: a PaddleDetection Train/Eval/TestReader dict + a dataset -> batches.

Sample transforms run per sample inside ``dataset[i]``; batch transforms run on the list of a
batch, then ``h``, ``w``, ``flipped`` are dropped and the rest is collated (stacked). Batches come
from a ``paddle.io.DataLoader`` over a ``DistributedBatchSampler`` (each rank reads its share) as
dicts of paddle Tensors: ``image`` [N,3,H,W] float32, ``im_shape`` / ``scale_factor`` [N,2],
``im_id`` [N,1], ``gt_bbox`` [N,M,4], ``is_crowd`` [N,M], ``target{i}`` [N,na,6+nc,h_i,w_i], ...
Randomness: each worker seeds numpy/random from (seed, epoch, worker id).
"""
import random
from collections.abc import Mapping
from numbers import Number
from typing import Any, Dict, List, Optional

import numpy as np
from paddle.io import DataLoader, DistributedBatchSampler

from ..core.errors import ConfigError, DatasetError
from ..core.registry import accepted_keys, create, lookup
from ..core.unimplemented import READER as NOT_IMPLEMENTED_READER_KEYS
from ..core.unimplemented import check_not_implemented
from ..runtime.preprocess import NormalizePermute
from . import transforms as T
from .dataset import DetDataset

# reader keys something reads (``inputs_def.image_shape``: export, anchor clustering); the
# PaddleDetection reader keys ppdet_lite does not implement are in ``core.unimplemented.READER``
READER_KEYS = {"sample_transforms", "batch_transforms", "batch_size", "shuffle", "drop_last",
               "mixup_epoch", "mosaic_epoch", "use_shared_memory", "collate_batch", "worker_num", "inputs_def",
               "name"}
DEFAULTS = {"train": dict(shuffle=True, drop_last=True), "eval": dict(shuffle=False, drop_last=False),
            "test": dict(shuffle=False, drop_last=False)}
DROPPED_KEYS = ("h", "w", "flipped")


def build_ops(specs: Optional[List[dict]], num_classes: int, where: str) -> List[Any]:
    """``[{Name: {kwargs}}, ...]`` -> op instances; ``num_classes`` goes to ops that take it."""
    if specs is not None and not isinstance(specs, (list, tuple)):
        raise ConfigError(f"{where}: must be a list of transforms like [{{Decode: {{}}}}, ...], got {specs!r}")
    ops = []
    for i, spec in enumerate(specs or []):
        loc = f"{where}[{i}]"
        if not isinstance(spec, Mapping) or len(spec) != 1:
            raise ConfigError(f"{loc}: each transform must be a one-key mapping like "
                              f"{{Decode: {{}}}}, got {spec!r}")
        (name, kwargs), = spec.items()
        keys = accepted_keys(lookup(name, loc))
        extra = {"num_classes": num_classes} if keys and "num_classes" in keys else {}
        ops.append(create(name, dict(kwargs or {}), where=loc, **extra))
    return fuse_normalize_permute(ops)


def fuse_normalize_permute(ops: List[Any]) -> List[Any]:
    """A ``NormalizeImage`` directly followed by ``Permute`` writes CHW itself, in one pass
    (``runtime.preprocess.NormalizePermute``, bit-equal); the ``Permute`` is dropped."""
    fused = []
    for op in ops:
        prev = fused[-1] if fused else None
        if isinstance(op, T.Permute) and isinstance(prev, T.NormalizeImage) and prev.chw is None:
            prev.chw = NormalizePermute(prev.op)
            continue
        fused.append(op)
    return fused


def _describe(sample) -> str:
    s = sample[0] if isinstance(sample, list) and sample else sample
    if isinstance(s, Mapping):
        return str(s.get("im_file", f"im_id {np.asarray(s.get('im_id', '?')).reshape(-1)}"))
    return "?"


ERROR_KEY = "__error__"  # a failed sample/batch travels to the main process under this key


class Compose:
    """Run ops in order; any failure becomes a DatasetError naming the op and the image.

    With ``catch`` the error is returned as ``{ERROR_KEY: message}`` instead of raised: Paddle's
    loader turns an exception in a worker into an opaque "Blocking queue is killed" error, so the
    loader carries the message out as data and raises it in the main process."""

    def __init__(self, ops: List[Any], where: str, catch: bool = False):
        self.ops, self.where, self.catch = ops, where, catch

    def _run(self, sample):
        name = _describe(sample)
        for i, op in enumerate(self.ops):
            try:
                sample = op(sample)
            except DatasetError:
                raise
            except Exception as e:
                raise DatasetError(f"{self.where}[{i}] {type(op).__name__} failed on {name}: "
                                   f"{type(e).__name__}: {e}") from e
        return sample

    def __call__(self, sample):
        if not self.catch:
            return self._run(sample)
        try:
            return self._run(sample)
        except DatasetError as e:
            return {ERROR_KEY: str(e)}


def collate(samples: List[dict], collate_batch: bool = True) -> Dict[str, Any]:
    """Stack each key over the batch; with ``collate_batch=False`` gt_*/is_crowd/difficult stay
    lists (per-image varying counts)."""
    out = {}
    for key in samples[0]:
        vals = [s[key] for s in samples]
        if not collate_batch and ("gt_" in key or key in ("is_crowd", "difficult")):
            out[key] = vals
        elif isinstance(vals[0], np.ndarray):
            try:
                out[key] = np.stack(vals)
            except ValueError as e:
                raise DatasetError(f"cannot batch {key!r}: shapes {[v.shape for v in vals]} differ; "
                                   "add PadBox / a fixed Resize or set collate_batch: false") from e
        elif isinstance(vals[0], Number):
            out[key] = np.array(vals)
        else:
            out[key] = vals
    return out


class BatchCompose(Compose):
    def __init__(self, ops: List[Any], where: str, collate_batch: bool = True, catch: bool = False):
        super().__init__(ops, where, catch)
        self.collate_batch = collate_batch

    def _run(self, samples: List[dict]) -> Dict[str, Any]:
        failed = [s[ERROR_KEY] for s in samples if ERROR_KEY in s]
        if failed:
            raise DatasetError(failed[0])
        samples = super()._run(list(samples))
        for s in samples:
            for key in DROPPED_KEYS:
                s.pop(key, None)
        return collate(samples, self.collate_batch)

    def __call__(self, samples: List[dict]) -> Dict[str, Any]:
        out = super().__call__(samples)
        if ERROR_KEY in out:  # as bytes: the loader converts batch values to tensors
            return {ERROR_KEY: np.frombuffer(out[ERROR_KEY].encode("utf-8"), np.uint8).copy()}
        return out


class DetLoader:
    """Iterable over batches; ``set_epoch(e)`` reshuffles, reseeds and drives ``mixup_epoch``."""

    def __init__(self, dataset: DetDataset, sample_ops: Compose, batch_ops: BatchCompose,
                 batch_size: int, shuffle: bool, drop_last: bool, worker_num: int,
                 use_shared_memory: bool, seed: Optional[int]):
        self.dataset, self.worker_num = dataset, worker_num
        self.seed = int(seed) if seed is not None else int(np.random.randint(0, 2 ** 31 - 1))
        self.epoch = 0
        self.batch_sampler = DistributedBatchSampler(dataset, batch_size=batch_size,
                                                     shuffle=shuffle, drop_last=drop_last)
        self.sample_ops, self.batch_ops = sample_ops, batch_ops
        self.dataloader = DataLoader(dataset, batch_sampler=self.batch_sampler,
                                     collate_fn=batch_ops, num_workers=worker_num,
                                     use_shared_memory=use_shared_memory and worker_num > 0,
                                     return_list=True, worker_init_fn=self._init_worker)

    def _seed_for(self, worker_id: int) -> int:
        return (self.seed * 1000003 + self.epoch * 7919 + worker_id) % (2 ** 32)

    def _init_worker(self, worker_id: int) -> None:
        np.random.seed(self._seed_for(worker_id))
        random.seed(self._seed_for(worker_id))

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next pass (each pass otherwise advances it by one)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        self.dataset.set_epoch(self.epoch)
        self.batch_sampler.set_epoch(self.epoch)
        if self.worker_num == 0:
            np.random.seed(self._seed_for(0))
            random.seed(self._seed_for(0))
        it = iter(self.dataloader)  # forks the workers, which read self.epoch
        self.epoch += 1
        return self._checked(it)

    @staticmethod
    def _checked(batches):
        for batch in batches:
            if ERROR_KEY in batch:
                err = batch[ERROR_KEY]
                err = err.numpy() if hasattr(err, "numpy") else np.asarray(err)
                raise DatasetError(err.tobytes().decode("utf-8"))
            yield batch


def build_dataloader(reader_cfg: Dict[str, Any], dataset: DetDataset, num_classes: int,
                     mode: str = "train", worker_num: Optional[int] = None, seed: Optional[int] = None,
                     shuffle: Optional[bool] = None, batch_size: Optional[int] = None,
                     drop_last: Optional[bool] = None) -> DetLoader:
    """Build the loader for ``mode`` in train / eval / test from a reader dict (YAML keys).

    Explicit arguments override the reader's keys. Parses the dataset (lazily, here)."""
    mode = mode.lower()
    if mode not in DEFAULTS:
        raise ConfigError(f"build_dataloader: mode must be train, eval or test, got {mode!r}")
    where = f"{mode.capitalize()}Reader"
    cfg = dict(reader_cfg or {})
    check_not_implemented(cfg, NOT_IMPLEMENTED_READER_KEYS, where)
    unknown = set(cfg) - READER_KEYS - set(NOT_IMPLEMENTED_READER_KEYS)
    if unknown:
        import difflib
        hints = {k: difflib.get_close_matches(k, READER_KEYS, 1) for k in unknown}
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (closest: {hints})")
    shuffle = cfg.get("shuffle", DEFAULTS[mode]["shuffle"]) if shuffle is None else shuffle
    drop_last = cfg.get("drop_last", DEFAULTS[mode]["drop_last"]) if drop_last is None else drop_last
    batch_size = int(cfg.get("batch_size", 1) if batch_size is None else batch_size)
    worker_num = int(cfg.get("worker_num", 0) if worker_num is None else worker_num)

    dataset.check_or_download_dataset()
    if dataset.roidbs is None:
        dataset.parse_dataset()
    sample_ops = Compose(build_ops(cfg.get("sample_transforms"), num_classes,
                                   f"{where}.sample_transforms"), f"{where}.sample_transforms",
                         catch=True)
    batch_ops = BatchCompose(build_ops(cfg.get("batch_transforms"), num_classes,
                                       f"{where}.batch_transforms"), f"{where}.batch_transforms",
                             collate_batch=cfg.get("collate_batch", True), catch=True)
    dataset.set_transform(sample_ops)
    has_mixup = any("Mixup" in spec for spec in cfg.get("sample_transforms") or [])
    has_mosaic = any("Mosaic" in spec for spec in cfg.get("sample_transforms") or [])
    if has_mosaic and has_mixup:
        raise ConfigError(f"{where}: Mosaic and Mixup in one reader are not supported; keep one")
    dataset.set_kwargs(mixup_epoch=cfg.get("mixup_epoch", -1) if has_mixup else -1,  # pairs: Mixup
                       mosaic_epoch=cfg.get("mosaic_epoch", -1) if has_mosaic else -1)
    if len(dataset) < batch_size and drop_last:
        raise DatasetError(f"{where}: the dataset has {len(dataset)} images, fewer than batch_size "
                           f"{batch_size} with drop_last: lower batch_size or set drop_last: false")
    return DetLoader(dataset, sample_ops, batch_ops, batch_size, shuffle, drop_last, worker_num,
                     bool(cfg.get("use_shared_memory", False)), seed)

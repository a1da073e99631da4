"""COCO bbox mAP through pycocotools, from the model's ``bbox [M,6]`` / ``bbox_num [N]`` outputs."""
import contextlib
import io
import json
import os
from typing import Dict, List, Optional

import numpy as np

from ..utils.logger import get_logger

logger = get_logger(__name__)

STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def to_coco_results(bbox: np.ndarray, bbox_num: np.ndarray, im_ids: np.ndarray,
                    clsid2catid: Dict[int, int], bias: float = 0.0) -> List[dict]:
    """Detections as COCO result dicts (``bbox`` in x, y, w, h pixels). ``bias`` adds to w/h (``--bias``)."""
    results = []
    bbox = np.asarray(bbox).reshape(-1, 6)
    start = 0
    for im_id, n in zip(np.asarray(im_ids).reshape(-1), np.asarray(bbox_num).reshape(-1)):
        rows = bbox[start:start + int(n)]
        start += int(n)
        rows = rows[(rows[:, 0] >= 0) & (rows[:, 1] > 0)]  # drop the empty-result placeholder row
        if len(rows) == 0:
            continue
        wh = rows[:, 4:6] - rows[:, 2:4] + bias
        for (cls, score, x1, y1), (w, h) in zip(rows[:, :4].tolist(), wh.tolist()):
            results.append({"image_id": int(im_id), "category_id": clsid2catid[int(cls)],
                            "bbox": [round(x1, 2), round(y1, 2), round(w, 2), round(h, 2)],
                            "score": round(score, 5)})
    return results


def coco_eval(results: List[dict], anno_file: str, classwise: bool = False,
              catid2name: Optional[Dict[int, str]] = None) -> Dict[str, float]:
    """Run COCOeval on ``results`` against ``anno_file``; returns the 12 summary stats by name."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not results:
        logger.warning("no detections to evaluate: mAP is 0")
        return {name: 0.0 for name in STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(anno_file)
        gt.dataset.setdefault("info", {})  # pycocotools' loadRes needs it; many user files lack it
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        ev.summarize()
    logger.info("COCO bbox metrics:\n" + summary.getvalue().rstrip())
    stats = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats)}
    if classwise:
        stats["per_class"] = per_class_ap(ev, catid2name or {})
    stats["_eval"] = ev
    return stats


def per_class_ap(ev, catid2name: Dict[int, str]) -> Dict[str, float]:
    """AP@[.5:.95] per category from an accumulated COCOeval (area all, 100 detections)."""
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    out = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[catid2name.get(cat_id, str(cat_id))] = float(p.mean()) if p.size else float("nan")
    return out


class COCOMetric:
    """Collects batches of detections, then evaluates; writes ``bbox.json`` to ``output_eval``."""

    def __init__(self, anno_file: str, clsid2catid: Dict[int, int], output_eval: Optional[str] = None,
                 classwise: bool = False, catid2name: Optional[Dict[int, str]] = None, bias: float = 0.0):
        self.anno_file, self.clsid2catid, self.output_eval = anno_file, clsid2catid, output_eval
        self.classwise, self.catid2name, self.bias = classwise, catid2name, bias
        self.reset()

    @classmethod
    def for_dataset(cls, dataset, output_eval: Optional[str] = None) -> "COCOMetric":
        """Over a parsed COCO-style dataset's annotation file and category ids."""
        return cls(dataset.get_anno(), {v: k for k, v in dataset.catid2clsid.items()},
                   output_eval=output_eval)

    def reset(self) -> None:
        self.results: List[dict] = []

    def update(self, outputs: Dict[str, np.ndarray], im_ids: np.ndarray) -> None:
        self.results += to_coco_results(outputs["bbox"], outputs["bbox_num"], im_ids, self.clsid2catid,
                                        self.bias)

    def accumulate(self) -> Dict[str, float]:
        if self.output_eval:
            os.makedirs(self.output_eval, exist_ok=True)
            path = os.path.join(self.output_eval, "bbox.json")
            with open(path, "w") as f:
                json.dump(self.results, f)
            logger.info(f"wrote {len(self.results)} detections to {path}")
        return coco_eval(self.results, self.anno_file, self.classwise, self.catid2name)

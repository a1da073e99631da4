"""Move weights between darknet files and our YOLOv4 models, layer by layer and by structure.

The model is described as darknet layers (``graph.describe``) and that description is compared
with the cfg, layer by layer: type, inputs, and what each layer computes (filters, size, stride,
groups, BN, activation, route groups, pool sizes, anchors, scale_x_y, new_coords). The first
difference is a ``ConfigError`` naming the cfg layer and line. The one accepted difference is the
class count: the output convs before [yolo] layers are then left as they are and the report
says so (fine-tuning darknet weights on another dataset).

    load_darknet_weights(model, "yolov4.weights", "yolov4.cfg")   -> report dict
    save_darknet(model, "out.cfg", "out.weights", width=608, height=608)
    apply_darknet_cfg(cfg_dict, "custom.cfg")   # num_classes / anchors / masks from the cfg
"""
import logging
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle

from ..core.errors import ConfigError
from .cfg import Layer, parse_cfg, resolve
from .graph import describe
from .weights import read_weights, write_weights

__all__ = ["compare", "load_darknet_weights", "save_darknet", "apply_darknet_cfg"]

logger = logging.getLogger(__name__)

_KEYS = {"convolutional": ("filters", "size", "stride", "pad", "groups", "batch_normalize",
                           "activation", "in_channels"),
         "route": ("groups", "group_id"), "maxpool": ("size", "stride", "padding"),
         "upsample": ("stride",), "shortcut": (), "sam": (),
         "yolo": ("classes", "anchors", "scale_x_y", "new_coords")}


def _diff(ours: Layer, theirs: Layer) -> List[str]:
    if ours.type != theirs.type:
        return [f"it is a [{theirs.type}] in the cfg, a [{ours.type}] in the model"]
    out = []
    if ours.inputs != theirs.inputs:
        out.append(f"inputs: layers {theirs.inputs} in the cfg, {ours.inputs} in the model")
    for key in _KEYS[ours.type]:
        a, b = theirs.attrs.get(key), ours.attrs.get(key)
        same = (abs(a - b) < 1e-6 if isinstance(a, float) and isinstance(b, float) else a == b)
        if not same:
            out.append(f"{key}: {a} in the cfg, {b} in the model")
    return out


def compare(ours: Sequence[Layer], theirs: Sequence[Layer], path: str = "<cfg>") -> List[int]:
    """Check that ``theirs`` (the cfg) and ``ours`` (the model) are the same network.

    Returns the indices of the output convs whose class count differs (each followed by a [yolo]
    that differs only in ``classes``); raises ``ConfigError`` at the first other difference.
    """
    heads = []
    for i, (o, t) in enumerate(zip(ours, theirs)):
        diffs = _diff(o, t)
        if not diffs:
            continue
        nxt = i + 1 < min(len(ours), len(theirs))
        if (nxt and o.type == t.type == "convolutional" and ours[i + 1].type == "yolo"
                and theirs[i + 1].type == "yolo" and all(d.startswith("filters") for d in diffs)):
            heads.append(i)
            continue
        if (o.type == t.type == "yolo" and i - 1 in heads
                and all(d.startswith("classes") for d in diffs)):
            continue
        raise ConfigError(f"{path}: {t.where(path)} does not match the model: "
                          f"{'; '.join(diffs)}. Use the ppdet_lite config made for this cfg "
                          "(configs/yolov4*.yml) or fix the cfg")
    if len(ours) != len(theirs):
        n = min(len(ours), len(theirs))
        where = theirs[n].where(path) if n < len(theirs) else f"after layer {n - 1}"
        raise ConfigError(f"{path}: the cfg has {len(theirs)} layers, the model {len(ours)}; "
                          f"they differ from {where} on")
    return heads


def _split_conv(lay: Layer, data: np.ndarray, offset: int, path: str):
    a = lay.attrs
    n = a["filters"]
    sizes = [("bias", n)]
    if a["batch_normalize"]:
        sizes += [("scale", n), ("mean", n), ("var", n)]
    sizes.append(("weight", n * (a["in_channels"] // a["groups"]) * a["size"] ** 2))
    need = sum(s for _, s in sizes)
    if offset + need > data.size:
        raise ConfigError(f"{path}: the .weights file ends inside {lay.where()} (needs {need} "
                          f"floats at offset {offset}, {data.size - offset} left): it belongs "
                          "to another cfg or is truncated")
    out = {}
    for name, size in sizes:
        out[name] = data[offset:offset + size]
        offset += size
    out["weight"] = out["weight"].reshape([n, a["in_channels"] // a["groups"], a["size"],
                                           a["size"]])
    return out, offset


def _set(param, value: np.ndarray) -> None:
    param.set_value(value.reshape(param.shape).astype("float32"))


def load_darknet_weights(model, weights_path: str, darknet_cfg: str,
                         allow_class_mismatch: bool = True) -> Dict[str, Any]:
    """Load darknet ``weights_path`` (trained with ``darknet_cfg``) into ``model`` in place.

    Returns dict(layers=convs loaded, skipped_heads=[cfg layer indices], seen, version,
    message). A class-count difference leaves the output convs untouched (logged warning);
    with ``allow_class_mismatch=False`` it is an error.
    """
    theirs = resolve(parse_cfg(darknet_cfg), path=darknet_cfg)
    g = describe(model)
    heads = compare(g.layers, theirs, darknet_cfg)
    if heads and not allow_class_mismatch:
        raise ConfigError(f"{darknet_cfg}: classes={theirs[heads[0] + 1].attrs['classes']} in "
                          f"the cfg, {g.layers[heads[0] + 1].attrs['classes']} in the model")
    wf = read_weights(weights_path)
    offset, loaded = 0, 0
    for lay in theirs:
        if lay.type != "convolutional":
            continue
        blobs, offset = _split_conv(lay, wf.data, offset, weights_path)
        if lay.index in heads:
            continue
        module = g.modules[lay.index]
        if lay.attrs["batch_normalize"]:
            bn = module.batch_norm
            _set(bn.bias, blobs["bias"])
            _set(bn.weight, blobs["scale"])
            _set(bn._mean, blobs["mean"])
            _set(bn._variance, blobs["var"])
            _set(module.conv.weight, blobs["weight"])
        else:
            _set(module.bias, blobs["bias"])
            _set(module.weight, blobs["weight"])
        loaded += 1
    if offset != wf.data.size:
        raise ConfigError(f"{weights_path}: {wf.data.size - offset} floats left after the last "
                          f"layer of {darknet_cfg}: the weights belong to a bigger network")
    msg = f"loaded {loaded} conv layers from {weights_path}"
    if heads:
        msg += (f"; the cfg has {theirs[heads[0] + 1].attrs['classes']} classes, the model "
                f"{g.layers[heads[0] + 1].attrs['classes']}: the {len(heads)} output convs "
                f"(cfg layers {heads}) keep their initial weights")
        logger.warning(msg)
    return dict(layers=loaded, skipped_heads=heads, seen=wf.seen,
                version=(wf.major, wf.minor, wf.revision), message=msg)


def save_darknet(model, cfg_path: str, weights_path: str, width: int, height: int,
                 seen: int = 0) -> int:
    """Write ``model`` as a darknet cfg + .weights (readable by darknet and OpenCV's DNN);
    returns the number of floats written."""
    g = describe(model)
    with open(cfg_path, "w") as f:
        f.write(g.cfg_text(width, height))
    blobs = []
    for index in sorted(g.modules):
        m = g.modules[index]
        if hasattr(m, "batch_norm"):
            bn = m.batch_norm
            blobs += [bn.bias.numpy(), bn.weight.numpy(), bn._mean.numpy(), bn._variance.numpy(),
                      m.conv.weight.numpy()]
        else:
            blobs += [m.bias.numpy(), m.weight.numpy()]
    return write_weights(weights_path, blobs, seen=seen)


def apply_darknet_cfg(config: Dict[str, Any], darknet_cfg: str,
                      head: str = "YOLOv4Head") -> Dict[str, Any]:
    """Set ``num_classes`` and the head's anchors / anchor_masks / scale_x_y in ``config`` (a
    loaded ppdet_lite config) from the cfg's [yolo] layers, deepest level first: the usual
    custom edits (classes=, filters=, anchors=) then build a matching model."""
    theirs = resolve(parse_cfg(darknet_cfg), path=darknet_cfg)
    yolos = sorted([lay for lay in theirs if lay.type == "yolo"], key=lambda l: l.shape[1])
    if not yolos:
        raise ConfigError(f"{darknet_cfg}: no [yolo] layer; only YOLO cfgs can be converted")
    classes = {y.attrs["classes"] for y in yolos}
    if len(classes) != 1:
        raise ConfigError(f"{darknet_cfg}: the [yolo] layers disagree on classes ({classes})")
    anchors = yolos[0].attrs["all_anchors"]
    if any(y.attrs["all_anchors"] != anchors for y in yolos):
        raise ConfigError(f"{darknet_cfg}: the [yolo] layers list different anchors; "
                          "give every [yolo] the same anchors= line")
    config["num_classes"] = classes.pop()
    section = dict(config.get(head) or {})
    section.update(anchors=[[int(v) if float(v).is_integer() else v for v in a] for a in anchors],
                   anchor_masks=[y.attrs["mask"] for y in yolos],
                   scale_x_y=[y.attrs["scale_x_y"] for y in yolos])
    config[head] = section
    return config

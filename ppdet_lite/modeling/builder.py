"""build_model: wire a detector from a PaddleDetection-layout config dict.

    architecture: YOLOv3
    YOLOv3: {backbone: MobileNetV3, neck: PPYOLOTinyFPN, yolo_head: YOLOv3Head, post_process: ...}
    (EfficientDet: the same with ``head: EfficientDetHead``)
    MobileNetV3: {...}   # one section per component, keys = constructor arguments

Values a component needs from elsewhere are passed explicitly: ``in_channels`` (the previous
stage's ``out_channels``), and the globals ``num_classes`` / ``norm_type`` / ``data_format`` to
components whose constructor declares them (a component's own section wins). Sub-objects
(``loss``, ``iou_loss``, ``iou_aware_loss``, ``decode``, ``nms``) are built from the section their
name points to, or from an inline dict with a ``name`` key.
"""
from typing import Any, Dict

from ..core.errors import ConfigError
from ..core.registry import accepted_keys, create, lookup
from .depthwise import use_matmul_depthwise

__all__ = ["build_model", "build_component"]

_SHARED = ("num_classes", "norm_type", "data_format")
_SUB_OBJECTS = ("loss", "iou_loss", "iou_aware_loss", "decode", "nms")


def build_component(cfg: Dict[str, Any], spec, where: str = "", **explicit):
    """Build ``spec`` (a registered name whose section is ``cfg[name]``, or a dict with ``name``)."""
    if isinstance(spec, dict):
        if "name" not in spec:
            raise ConfigError(f"{where}: inline component {spec} needs a 'name' key")
        name, section, where = spec["name"], dict(spec), f"{where}.{spec['name']}"
    elif isinstance(spec, str):
        name, section, where = spec, dict(cfg.get(spec) or {}), f"section {spec!r}"
    else:
        raise ConfigError(f"{where}: expected a component name or dict, got {spec!r}")
    keys = accepted_keys(lookup(name, where)) or set()
    for key in _SHARED:
        if key in keys and key not in section and key not in explicit and key in cfg:
            value = cfg[key]
            explicit[key] = value
    for key in _SUB_OBJECTS:
        if key in section and isinstance(section[key], (str, dict)):
            section[key] = build_component(cfg, section[key], f"{where}.{key}")
    return create(name, section, where=where, **explicit)


def check_train_anchors(cfg: Dict[str, Any]) -> None:
    """The head's anchors and the TrainReader's Gt2YoloTarget anchors must be the same list."""
    head = (cfg.get("YOLOv3Head") or {}).get("anchors")
    reader = cfg.get("TrainReader") or {}
    for op in reader.get("batch_transforms") or [] if isinstance(reader, dict) else []:
        if isinstance(op, dict) and "Gt2YoloTarget" in op:
            targets = (op["Gt2YoloTarget"] or {}).get("anchors")
            if head is not None and targets is not None and list(map(list, head)) != list(map(list, targets)):
                raise ConfigError(f"{cfg.source('YOLOv3Head') if hasattr(cfg, 'source') else '<config>'}: "
                                  "YOLOv3Head.anchors and TrainReader Gt2YoloTarget.anchors differ; set both "
                                  "to the same list (a YAML anchor &a / *a, as tools/anchor_cluster.py writes)")


def build_model(cfg: Dict[str, Any]):
    """The architecture ``cfg['architecture']`` (e.g. YOLOv3) with all its parts built."""
    check_train_anchors(cfg)
    arch = cfg.get("architecture")
    if not arch:
        raise ConfigError("config has no 'architecture' key; add e.g. 'architecture: YOLOv3'")
    parts = dict(cfg.get(arch) or {})
    # the head's key is also the architecture's argument name: 'yolo_head' (YOLOv3) or 'head'
    head_key = "yolo_head" if "yolo_head" in parts or "head" not in parts else "head"
    for key in ("backbone", "neck", head_key):
        if key not in parts:
            hint = " (or 'head')" if key == "yolo_head" else ""
            raise ConfigError(f"section {arch!r} needs a {key!r}{hint} entry (a component name)")
    backbone = build_component(cfg, parts.pop("backbone"), f"{arch}.backbone")
    neck = build_component(cfg, parts.pop("neck"), f"{arch}.neck",
                           in_channels=list(backbone.out_channels))
    head = build_component(cfg, parts.pop(head_key), f"{arch}.{head_key}",
                           in_channels=list(neck.out_channels))
    post = parts.pop("post_process", None)
    if post is not None:
        post = build_component(cfg, post, f"{arch}.post_process")
    if "data_format" in cfg and "data_format" in (accepted_keys(lookup(arch)) or ()):
        parts.setdefault("data_format", cfg["data_format"])
    model = create(arch, parts, where=f"section {arch!r}", backbone=backbone, neck=neck,
                   post_process=post, **{head_key: head})
    use_matmul_depthwise(model, int(cfg.get("depthwise_matmul_max_pixels", 0)))  # training only
    return model

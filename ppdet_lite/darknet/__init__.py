"""Darknet interoperability: read ``.cfg`` + ``.weights`` into our YOLOv4 models, write them back.

``cfg`` parses and resolves cfg files; ``weights`` reads and writes the binary format; ``graph``
describes one of our models as darknet layers; ``mapping`` matches that description against a cfg
and moves the tensors both ways.
"""
from .cfg import count_params, parse_cfg, parse_cfg_text, resolve  # noqa: F401

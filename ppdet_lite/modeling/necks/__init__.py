"""Necks; importing this package registers them."""
from .tiny_fpn import PPYOLOTinyFPN  # noqa: F401
from .ppyolo_fpn import PPYOLOFPN  # noqa: F401
from .ppyolo_pan import PPYOLOPAN  # noqa: F401
from .bifpn import BiFPN  # noqa: F401

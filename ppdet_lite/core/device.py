"""Device choice: GPU when the config asks for it and this Paddle can use one, else CPU."""
from typing import Any, Dict

from ..utils.logger import get_logger

logger = get_logger(__name__)


def set_device(cfg: Dict[str, Any]) -> str:
    """``paddle.set_device`` from ``cfg['use_gpu']``; returns ``'gpu'`` or ``'cpu'`` (a fallback is logged)."""
    import paddle

    want_gpu = bool(cfg.get("use_gpu", False))
    device = "gpu" if want_gpu and paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else "cpu"
    if want_gpu and device == "cpu":
        logger.info("use_gpu is set but this Paddle has no usable GPU: running on CPU")
    paddle.set_device(device)
    return device

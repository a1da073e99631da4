"""One logger for the package; only rank 0 prints INFO in multi-process runs."""
import logging
import os
import sys

_CONFIGURED = False


def get_logger(name: str = "ppdet_lite") -> logging.Logger:
    global _CONFIGURED
    logger = logging.getLogger("ppdet_lite")
    if not _CONFIGURED:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(message)s", "%m/%d %H:%M:%S"))
        logger.addHandler(handler)
        rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
        logger.setLevel(logging.INFO if rank == 0 else logging.ERROR)
        logger.propagate = False
        _CONFIGURED = True
    return logger if name == "ppdet_lite" else logger.getChild(name.split(".")[-1])

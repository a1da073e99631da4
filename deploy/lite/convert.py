"""Convert an exported model dir to a Paddle Lite ``.nb``: ``python deploy/lite/convert.py --help``.

The converter is ``ppdet_lite.export.lite``."""
from ppdet_lite.export.lite import LiteUnavailable, convert, find_python310, lite_venv, main  # noqa: F401

if __name__ == "__main__":
    main()

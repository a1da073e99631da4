"""Run a Paddle Lite .nb detector on images, inside the Lite venv (``ppdet_lite.runtime.lite``;
``--help``)."""
from ppdet_lite.runtime.lite import main

if __name__ == "__main__":
    main()

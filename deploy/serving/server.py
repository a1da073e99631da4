"""HTTP detection server over an exported model dir (``ppdet_lite.deploy.serving``; ``--help``)."""
from ppdet_lite.deploy.serving import main

if __name__ == "__main__":
    main()

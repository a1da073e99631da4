"""Client of the HTTP detection server (``ppdet_lite.deploy.client``; ``--help``)."""
from ppdet_lite.deploy.client import main

if __name__ == "__main__":
    main()

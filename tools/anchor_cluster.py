"""Cluster YOLO anchors on the TrainDataset's boxes and write them where the config needs them.

The tool lives in ppdet_lite/tools/anchor_cluster.py (also installed as a console script)."""
from ppdet_lite.tools.anchor_cluster import cli

if __name__ == "__main__":
    cli()

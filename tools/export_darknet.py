"""Write a ppdet_lite YOLOv4 model as darknet files (.cfg + .weights), readable by darknet and

The tool lives in ppdet_lite/tools/export_darknet.py."""
from ppdet_lite.tools.export_darknet import cli

if __name__ == "__main__":
    cli()

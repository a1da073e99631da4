"""Paddle-free runtime pieces shared by training, the deploy runtimes and the Paddle Lite side venv.

Imports numpy and cv2 only (never paddle), so the Python 3.10 Lite environment, which has no
paddle, runs the same code:

- ``preprocess``: the one Resize / NormalizeImage / Permute / PadStride implementation (the
  training transforms in ``ppdet_lite.data`` wrap it; deploy builds it from ``infer_cfg.yml``)
- ``result``: ``Detections`` (boxes, scores, class_ids, class_names), the one result record, and
  the one rule that turns a detector's ``bbox``/``bbox_num`` output into it
- ``boxes``: the one numpy IoU
- ``images``: reading and listing images
- ``lite``: the Paddle Lite runner
- ``timing``: the stage timer and the timed pass over images of every benchmarked backend
"""

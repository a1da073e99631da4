"""Deploy runtimes over an exported model dir (PaddleDetection's inference format): the Paddle
Inference ``DetectorPredictor`` (``predictor``), the image/video CLI (``infer``), the HTTP server
(``serving``) and its standard-library client (``client``). ``deploy/python``, ``deploy/serving``
are thin scripts over these; the paddle-free pieces (preprocessing, the result record, the Lite
runner) live in ``ppdet_lite.runtime``. Predictors come from ``ppdet_lite.export.inference``.
"""

"""Export: a trained detector to PaddleDetection's inference format, and from there to ONNX and
Paddle Lite; the one Paddle Inference predictor factory. ``slim`` and ``deploy`` build on it.

    jit.py            export_model: paddle.jit.save with the export input spec + infer_cfg.yml
    infer_cfg.py      the infer_cfg.yml content and the image input shape it is exported for
    inference.py      load_predictor / inference_predictor / run_inference (Paddle Inference)
    program_edit.py   reading and editing a saved program (SavedProgram, bias folding, compaction)
    onnx_export.py    ONNX through paddle2onnx, refused early for ops it cannot convert, checked
    lite.py           Paddle Lite .nb conversion (lite_opt.py: the opt toolchain and Lite venv,
                      lite_x86_int8.py: the x86 int8 kernel workarounds)

Nothing here imports the training loop or switches the process's paddle device.
"""

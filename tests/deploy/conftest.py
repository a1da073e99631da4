"""Session fixtures for the deploy tests: test images, PaddleDetection's own Tiny exported by
PaddleDetection's classes (in a subprocess: ppdet keeps global state), ours exported by
``ppdet_lite.export`` together with its dygraph outputs, and the Lite venv's Python."""
import importlib.util
import os
import shutil
from types import SimpleNamespace

import cv2
import pytest

from .helpers import PYTHON, REPO, calibration_image, run, spread_scores

SIZE = 192  # network input of the test models (Tiny exports at 320; small keeps tests fast)
LABELS = [f"class{i}" for i in range(80)]


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="session")
def image_files(work):
    """Two lossless test images of different sizes (PNG: decoded pixels equal the arrays)."""
    paths = []
    for seed, (h, w) in enumerate([(240, 320), (200, 300)]):
        path = str(work / f"img{seed}.png")
        cv2.imwrite(path, calibration_image(h, w, seed)[:, :, ::-1])
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def ppdet_tiny(work):
    """PaddleDetection 2.6.0's PP-YOLO Tiny (80 classes, fixed 192 input) as a deploy model dir."""
    if importlib.util.find_spec("ppdet") is None:
        pytest.skip("PaddleDetection (ppdet) is not installed: it is the reference exporter")
    out = str(work / "ppdet_tiny")
    run([PYTHON, "-m", "tests.deploy.ppdet_tiny_export", out, "--size", str(SIZE)])
    return out


def our_cfg(config: str = "ppyolo_tiny", size: int = SIZE, extra=()):
    """configs/<config>.yml at a fixed ``size`` input on CPU, plus ``extra`` overrides."""
    import ppdet_lite
    return ppdet_lite.load_config(os.path.join(REPO, "configs", f"{config}.yml"),
                                  [f"TestReader.inputs_def.image_shape=[3,{size},{size}]",
                                   "use_gpu=False", *extra])


def export_ours(work, name: str, image_files, extra=(), sizes=(SIZE,),
                config: str = "ppyolo_tiny", save_weights: bool = True):
    """Build our ``config`` model (input ``sizes[0]``), give it box-producing weights, run it in
    dygraph on ``image_files`` at each input size in ``sizes`` (deploy preprocessing), then
    export; -> namespace(dir, dygraph, cfg, weights: the .pdparams it was exported from, or None
    without ``save_weights``)."""
    import paddle

    import ppdet_lite
    from ppdet_lite.export.jit import export_model, image_shape_of, preprocess_list, set_export_mode
    from ppdet_lite.runtime.preprocess import batch_inputs, build_ops, preprocess

    cfg = our_cfg(config, sizes[0], extra)
    cfg["filename"] = name
    paddle.seed(0)
    model = ppdet_lite.build_model(cfg)
    spread_scores(model, sizes[0])
    set_export_mode(model, cfg.get("export") or {})
    dygraph = {}
    fixed = image_shape_of(cfg)  # a fixed [3, H, W] input (H != W too) is run as exported
    for size in sizes:
        shape = fixed if size == sizes[0] and fixed[2] != -1 else [None, 3, size, size]
        ops = build_ops(preprocess_list(cfg, shape))
        for path in image_files:
            im, info = preprocess(path, ops)
            inputs = batch_inputs([im], [info])
            with paddle.no_grad():
                out = model({k: paddle.to_tensor(v) for k, v in inputs.items()})
            dygraph[(size, path)] = {k: v.numpy() for k, v in out.items()}
    assert image_shape_of(cfg)[2] in (sizes[0], -1)
    weights = str(work / f"{name}.pdparams") if save_weights else None
    if weights:
        paddle.save(model.state_dict(), weights)
    model_dir = export_model(cfg, str(work / "ours"), model=model,
                             labels=LABELS[:cfg["num_classes"]])
    return SimpleNamespace(dir=model_dir, dygraph=dygraph, cfg=cfg, weights=weights)


@pytest.fixture(scope="session")
def ours_tiny(work, image_files):
    """Our PP-YOLO Tiny, fixed 192 input, full post-process: dir + dygraph outputs per image."""
    return export_ours(work, "ours_tiny", image_files)


@pytest.fixture(scope="session")
def run_boxes():
    """``run_boxes(model_dir, image, threshold)`` -> [K,6] rows (class, score, x1, y1, x2, y2)
    from the deploy DetectorPredictor."""
    from ppdet_lite.deploy.predictor import DetectorPredictor
    cache = {}

    def boxes(model_dir, image, threshold=0.0):
        if model_dir not in cache:
            cache[model_dir] = DetectorPredictor(model_dir)
        return cache[model_dir].predict([image], threshold)[0].rows()
    return boxes


@pytest.fixture(scope="session")
def lite_python():
    """The Lite venv's interpreter with ppdet_lite.runtime (created once per machine, then cached)."""
    from ppdet_lite.export import lite_opt
    if not shutil.which("paddle_lite_opt") and lite_opt.find_python310() is None:
        pytest.skip("Python 3.10 is absent (paddlelite wheels stop at cp310): no Lite runtime")
    try:
        return os.path.join(lite_opt.lite_venv(), "bin", "python")
    except lite_opt.LiteUnavailable as e:
        pytest.skip(f"Paddle Lite venv unavailable: {e}")

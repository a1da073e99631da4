"""ppdet_lite.deploy (deploy/python): preprocessing, DetectorPredictor on PaddleDetection's export,
predictor settings, the threshold rule, the CLI, video."""
import json
import os

import cv2
import numpy as np
import pytest

from ppdet_lite.deploy import infer
from ppdet_lite.deploy.predictor import DeployConfig, DetectorPredictor
from ppdet_lite.export.inference import load_predictor
from ppdet_lite.runtime.preprocess import NormalizeImage, Resize, build_ops

from .helpers import PYTHON, calibration_image, run, same_boxes

pytestmark = pytest.mark.slow  # exports / converts / trains: the full suite runs it, -m "not slow" skips it


def test_resize_and_normalize_match_paddledetection_formulas():
    im = np.arange(300 * 500 * 3, dtype=np.uint8).reshape(300, 500, 3)
    out, info = Resize([320, 320], keep_ratio=True)(im, {})
    # short side to 320 would make the long side 533 > 320: scale by the long side instead
    assert out.shape[:2] == (192, 320)
    np.testing.assert_allclose(info["scale_factor"], [0.64, 0.64], rtol=1e-6)
    out, info = Resize([192, 256], keep_ratio=False, interp=2)(im, {})
    assert out.shape[:2] == (192, 256) and list(info["im_shape"]) == [192, 256]
    np.testing.assert_allclose(info["scale_factor"], [192 / 300, 256 / 500], rtol=1e-6)
    x, _ = NormalizeImage([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(
        np.full((1, 1, 3), 255, np.uint8), {})
    np.testing.assert_allclose(x[0, 0], [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                         (1 - 0.406) / 0.225], rtol=1e-6)
    with pytest.raises(ValueError, match="Preprocess op 'Mosaic'"):
        build_ops([{"type": "Mosaic"}])


def test_keep_ratio_is_the_training_rule():
    """Where PaddleDetection's deploy preprocess and its training Resize disagree (short side
    first, rounded long side 160.5 -> 160 fits), ours takes the training rule everywhere: the
    largest scale that fits both sides, im_shape unrounded."""
    im = np.zeros((200, 321, 3), np.uint8)
    out, info = Resize([100, 160], keep_ratio=True)(im, {})
    np.testing.assert_allclose(info["scale_factor"], [160 / 321] * 2, rtol=1e-6)
    np.testing.assert_allclose(info["im_shape"], [200 * 160 / 321, 160], rtol=1e-6)
    assert out.shape[:2] == (100, 160) and out.dtype == np.float32


def test_runs_paddledetection_export_and_batches(ppdet_tiny, image_files, run_boxes):
    det = DetectorPredictor(ppdet_tiny, batch_size=2, threshold=0.05)
    ims = [cv2.imread(p)[:, :, ::-1] for p in image_files]
    batched = det.predict(ims)
    assert len(batched) == 2
    for path, got in zip(image_files, batched):
        single = run_boxes(ppdet_tiny, path, 0.05)
        assert len(single) > 5
        same_boxes(single, got.rows(), score_tol=1e-5, box_tol=1e-3)
    # a clone shares the weights and gives the same answer
    same_boxes(det.clone().predict([ims[0]])[0].rows(), batched[0].rows(), 1e-6, 1e-4)


def summary(config) -> dict:
    """Option -> value of ``Config.summary()`` (memory_optim has no getter of its own)."""
    rows = [line.strip("|").split("|") for line in config.summary().splitlines() if "|" in line]
    return {k.strip(): v.strip() for k, v in (r for r in rows if len(r) == 2)}


def test_predictor_settings_follow_paddledetection(ppdet_tiny):
    _, config = load_predictor(ppdet_tiny, cpu_threads=2, enable_mkldnn=True)
    assert not config.use_gpu() and config.mkldnn_enabled()
    assert config.cpu_math_library_num_threads() == 2
    assert summary(config)["memory_optim"] == "true" and summary(config)["ir_optim"] == "true"
    assert not config.use_feed_fetch_ops_enabled()
    with pytest.raises(ValueError, match="needs --device GPU"):
        load_predictor(ppdet_tiny, run_mode="trt_fp16")


def test_bad_model_dir_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="infer_cfg.yml not found"):
        DeployConfig.load(str(tmp_path))
    (tmp_path / "infer_cfg.yml").write_text("arch: YOLO\n")
    with pytest.raises(ValueError, match=r"missing key\(s\) \['Preprocess', 'label_list'\]"):
        DeployConfig.load(str(tmp_path))


def test_one_threshold_rule_and_no_padding_rows(ours_tiny):
    """``score >= threshold`` keeps a row at the threshold; the padding row an image without
    detections gets ([0, 0, 0, 0, 1, 1], or PaddleDetection's class -1 row) never comes back,
    not even at threshold 0."""
    det = DetectorPredictor(ours_tiny.dir)
    bbox = np.array([[3, 0.25, 1, 2, 30, 40], [5, 0.2499, 2, 2, 9, 9],    # image 0
                     [0, 0.0, 0, 0, 1, 1],                                # image 1: padding
                     [-1, 0.0, 0, 0, 0, 0]], np.float32)                  # image 2: padding
    out = det.postprocess([bbox, np.array([2, 1, 1], np.int32)], threshold=0.25, num_images=3)
    assert [len(r.scores) for r in out] == [1, 0, 0]
    np.testing.assert_array_equal(out[0].rows(), bbox[:1])
    assert out[0].class_names == ["class3"] and out[0].class_ids.tolist() == [3]
    out = det.postprocess([bbox, np.array([2, 1, 1], np.int32)], threshold=0.0, num_images=3)
    assert [len(r.scores) for r in out] == [2, 0, 0]


def test_cli_images_json_and_benchmark(ours_tiny, image_files, run_boxes, tmp_path, capsys):
    out = tmp_path / "out"
    infer.main(["--model_dir", ours_tiny.dir, "--image_dir", os.path.dirname(image_files[0]),
                "--threshold", "0.1", "--output_dir", str(out), "--save_results"])
    for path in image_files:
        drawn = cv2.imread(str(out / os.path.basename(path)))
        assert drawn.shape == cv2.imread(path).shape
        assert np.abs(drawn.astype(int) - cv2.imread(path)).sum() > 0  # boxes were drawn
    records = json.load(open(out / "bbox.json"))
    for image_id, path in enumerate(sorted(image_files)):
        mine = [r for r in records if r["image_id"] == image_id]
        ref = run_boxes(ours_tiny.dir, path, 0.1)
        assert len(mine) == len(ref) > 0
        xyxy = [[r["category_id"], r["score"], r["bbox"][0], r["bbox"][1],
                 r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in mine]
        same_boxes(ref, np.array(xyxy), 1e-5, 1e-3)
    capsys.readouterr()
    infer.main(["--model_dir", ours_tiny.dir, "--image_file", image_files[0], "--run_benchmark",
                "--enable_mkldnn", "--cpu_threads", "2", "--save_images", "False",
                "--output_dir", str(tmp_path / "bench")])
    stdout = capsys.readouterr().out
    stats = json.loads(stdout.split("BENCHMARK ", 1)[1].splitlines()[0])
    assert stats["img_num"] == 1 and stats["enable_mkldnn"] and stats["cpu_threads"] == 2
    assert 0 < stats["inference_ms"] < 1000 and stats["preprocess_ms"] > 0
    assert stats["cpu_rss_mb"] > 50
    with pytest.raises(SystemExit):
        infer.main(["--model_dir", ours_tiny.dir, "--image_file", image_files[0],
                    "--device", "TPU"])


def test_video_file(ours_tiny, tmp_path):
    src = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(src, cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for seed in range(3):
        writer.write(calibration_image(240, 320, seed)[:, :, ::-1].copy())
    writer.release()
    infer.main(["--model_dir", ours_tiny.dir, "--video_file", src, "--threshold", "0.1",
                "--output_dir", str(tmp_path / "vout")])
    cap = cv2.VideoCapture(str(tmp_path / "vout" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_script_is_a_thin_cli(ours_tiny, image_files, tmp_path):
    """``python deploy/python/infer.py`` still runs (over ppdet_lite.deploy.infer)."""
    out = tmp_path / "script"
    proc = run([PYTHON, "deploy/python/infer.py", "--model_dir", ours_tiny.dir, "--image_file",
                image_files[0], "--threshold", "0.1", "--output_dir", str(out)])
    assert "boxes ->" in proc.stdout and (out / os.path.basename(image_files[0])).is_file()

"""Export + Paddle Inference runner (deploy/python): dygraph parity, knobs, CLI, video."""
import zlib  # noqa: F401  (before paddle)
import json
import os
import sys

import cv2
import numpy as np
import pytest
import yaml

from .conftest import SIZE, export_ours
from .helpers import PYTHON, REPO, calibration_image, dygraph_boxes, run, same_boxes

sys.path.insert(0, os.path.join(REPO, "deploy", "python"))
from detector import DeployConfig, DetectorPredictor, load_predictor  # noqa: E402
from preprocess import NormalizeImage, Resize, build_ops  # noqa: E402


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


def test_export_writes_paddledetection_deploy_format(ours_tiny):
    assert sorted(f for f in os.listdir(ours_tiny.dir) if f.startswith(("model", "infer"))) == \
        ["infer_cfg.yml", "model.pdiparams", "model.pdiparams.info", "model.pdmodel"]
    with open(os.path.join(ours_tiny.dir, "infer_cfg.yml")) as f:
        cfg = yaml.safe_load(f)
    assert list(cfg)[:6] == ["mode", "draw_threshold", "metric", "use_dynamic_shape", "arch",
                             "min_subgraph_size"]
    assert (cfg["arch"], cfg["min_subgraph_size"], cfg["use_dynamic_shape"]) == ("YOLO", 3, False)
    assert [op["type"] for op in cfg["Preprocess"]] == ["Resize", "NormalizeImage", "Permute"]
    assert cfg["Preprocess"][0]["target_size"] == [SIZE, SIZE]
    assert cfg["Preprocess"][0]["interp"] == 2 and len(cfg["label_list"]) == 80
    det = DetectorPredictor(ours_tiny.dir)
    assert det.input_names == ["im_shape", "image", "scale_factor"]  # as PaddleDetection's


def test_inference_matches_dygraph(ours_tiny, image_files, run_boxes):
    for path in image_files:
        ref = dygraph_boxes(ours_tiny.dygraph[(SIZE, path)])
        assert len(ref) > 10  # the weights were set so that boxes exist
        same_boxes(ref, run_boxes(ours_tiny.dir, path), score_tol=1e-4, box_tol=1e-2)


def test_runs_paddledetection_export_and_batches(ppdet_tiny, image_files, run_boxes):
    det = DetectorPredictor(ppdet_tiny, batch_size=2, threshold=0.05)
    ims = [cv2.imread(p)[:, :, ::-1] for p in image_files]
    batched = det.predict(ims)
    assert len(batched) == 2
    for path, got in zip(image_files, batched):
        single = run_boxes(ppdet_tiny, path, 0.05)
        assert len(single) > 5
        same_boxes(single, got["boxes"], score_tol=1e-5, box_tol=1e-3)
    # a clone shares the weights and gives the same answer
    same_boxes(det.clone().predict([ims[0]])[0]["boxes"], batched[0]["boxes"], 1e-6, 1e-4)


def test_predictor_settings_follow_paddledetection(ppdet_tiny):
    _, config = load_predictor(ppdet_tiny, cpu_threads=2, enable_mkldnn=True)
    assert not config.use_gpu() and config.mkldnn_enabled()
    assert config.cpu_math_library_num_threads() == 2
    assert config.enable_memory_optim and not config.use_feed_fetch_ops_enabled()
    with pytest.raises(ValueError, match="needs --device GPU"):
        load_predictor(ppdet_tiny, run_mode="trt_fp16")


def test_bad_model_dir_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="infer_cfg.yml not found"):
        DeployConfig.load(str(tmp_path))
    (tmp_path / "infer_cfg.yml").write_text("arch: YOLO\n")
    with pytest.raises(ValueError, match=r"missing key\(s\) \['Preprocess', 'label_list'\]"):
        DeployConfig.load(str(tmp_path))


def test_cli_images_json_and_benchmark(ppdet_tiny, image_files, run_boxes, tmp_path):
    out = tmp_path / "out"
    run([PYTHON, "deploy/python/infer.py", "--model_dir", ppdet_tiny, "--image_dir",
         os.path.dirname(image_files[0]), "--threshold", "0.1", "--output_dir", str(out),
         "--save_results"])
    for path in image_files:
        drawn = cv2.imread(str(out / os.path.basename(path)))
        assert drawn.shape == cv2.imread(path).shape
        assert np.abs(drawn.astype(int) - cv2.imread(path)).sum() > 0  # boxes were drawn
    records = json.load(open(out / "bbox.json"))
    for image_id, path in enumerate(sorted(image_files)):
        mine = [r for r in records if r["image_id"] == image_id]
        ref = run_boxes(ppdet_tiny, path, 0.1)
        assert len(mine) == len(ref) > 0
        xyxy = [[r["category_id"], r["score"], r["bbox"][0], r["bbox"][1],
                 r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in mine]
        same_boxes(ref, np.array(xyxy), 1e-5, 1e-3)
    bench = run([PYTHON, "deploy/python/infer.py", "--model_dir", ppdet_tiny, "--image_file",
                 image_files[0], "--run_benchmark", "--enable_mkldnn", "--cpu_threads", "2",
                 "--save_images", "False", "--output_dir", str(tmp_path / "bench")])
    stats = json.loads(bench.stdout.split("BENCHMARK ", 1)[1].splitlines()[0])
    assert stats["img_num"] == 1 and stats["enable_mkldnn"] and stats["cpu_threads"] == 2
    assert 0 < stats["inference_ms"] < 1000 and stats["preprocess_ms"] > 0
    assert stats["cpu_rss_mb"] > 50


def test_video_file(ppdet_tiny, tmp_path):
    src = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(src, cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for seed in range(3):
        writer.write(calibration_image(240, 320, seed)[:, :, ::-1].copy())
    writer.release()
    run([PYTHON, "deploy/python/infer.py", "--model_dir", ppdet_tiny, "--video_file", src,
         "--threshold", "0.1", "--output_dir", str(tmp_path / "vout")])
    cap = cv2.VideoCapture(str(tmp_path / "vout" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()


def test_export_knobs(work, image_files):
    """nms=False -> decoded boxes/scores; dynamic shape + fuse_conv_bn -> same boxes at 2 sizes;
    benchmark -> raw head maps from an image-only graph."""
    from paddle.inference import Config, create_predictor
    dyn = export_ours(work, "ours_dyn_fused", image_files[:1],
                      ["TestReader.inputs_def.image_shape=[3,-1,-1]", "export.fuse_conv_bn=True"],
                      sizes=(SIZE, 256))
    with open(os.path.join(dyn.dir, "infer_cfg.yml")) as f:
        cfg = yaml.safe_load(f)
    assert cfg["use_dynamic_shape"] is True
    pdmodel = open(os.path.join(dyn.dir, "model.pdmodel"), "rb").read()
    assert b"batch_norm" not in pdmodel  # every BN folded into its conv
    for size in (SIZE, 256):
        det = DetectorPredictor(dyn.dir)
        det.ops = build_ops([dict(cfg["Preprocess"][0], target_size=[size, size])] +
                            cfg["Preprocess"][1:])
        got = det.predict(image_files[:1], threshold=0.0)[0]["boxes"]
        same_boxes(dygraph_boxes(dyn.dygraph[(size, image_files[0])]), got, 1e-4, 2e-2)

    def outputs(model_dir):
        config = Config(os.path.join(model_dir, "model.pdmodel"),
                        os.path.join(model_dir, "model.pdiparams"))
        config.disable_glog_info()
        pred = create_predictor(config)
        x = np.random.RandomState(0).rand(1, 3, SIZE, SIZE).astype("float32")
        feed = {"image": x, "im_shape": np.array([[SIZE, SIZE]], "float32"),
                "scale_factor": np.ones((1, 2), "float32")}
        for n in pred.get_input_names():
            pred.get_input_handle(n).copy_from_cpu(feed[n])
        pred.run()
        return pred.get_input_names(), [pred.get_output_handle(n).copy_to_cpu()
                                        for n in pred.get_output_names()]

    no_nms = export_ours(work, "ours_no_nms", [], ["export.nms=False"])
    names, (boxes, scores) = outputs(no_nms.dir)
    m = 3 * (6 * 6 + 12 * 12 + 24 * 24)  # anchors at 192 px: strides 32, 16, 8
    assert boxes.shape == (1, m, 4) and scores.shape == (1, 80, m)
    bench = export_ours(work, "ours_bench", [], ["export.benchmark=True"])
    names, maps = outputs(bench.dir)
    assert names == ["image"]
    assert [o.shape for o in maps] == [(1, 255, 6, 6), (1, 255, 12, 12), (1, 255, 24, 24)]

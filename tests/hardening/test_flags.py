"""Bad command-line flags of every tool and the server's start-up: exit 2 and one ``error:`` line
naming the flag and the value (argparse's usage errors included)."""
import os

import pytest

from .helpers import base_args, refused, run_tool


def _infer(ws, tmp, *extra):
    return ["-c", ws.cfg, "--infer_img", ws.image, "--output_dir", str(tmp / "out"), *extra]


def _deploy(model_dir, ws, tmp, *extra, image=True):
    return ["--model_dir", model_dir, *(["--image_file", ws.image] if image else []),
            "--output_dir", str(tmp / "out"), *extra]


INFER = {
    "draw_threshold_2": (["--draw_threshold", "2"], ["--draw_threshold", "2"]),
    "draw_threshold_neg": (["--draw_threshold", "-1"], ["--draw_threshold", "-1"]),
    "draw_threshold_nan": (["--draw_threshold", "nan"], ["--draw_threshold", "nan"]),
    "draw_threshold_inf": (["--draw_threshold", "inf"], ["--draw_threshold", "inf"]),
    "draw_threshold_text": (["--draw_threshold", "abc"], ["--draw_threshold", "abc"]),
    "unknown_flag": (["--infer_image", "x.jpg"], ["--infer_image"]),
}


@pytest.mark.parametrize("name", list(INFER))
def test_infer_flags(name, ws, tmp_path):
    extra, words = INFER[name]
    refused(run_tool("infer", _infer(ws, tmp_path, *extra)), *words)


def test_infer_dir_missing(ws, tmp_path):
    d = str(tmp_path / "nodir")
    refused(run_tool("infer", ["-c", ws.cfg, "--infer_dir", d]), "--infer_dir", d, "no such directory")


def test_infer_dir_without_images(ws, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    refused(run_tool("infer", ["-c", ws.cfg, "--infer_dir", str(tmp_path)]), "--infer_dir", str(tmp_path))


def test_infer_without_images(ws, tmp_path):
    refused(run_tool("infer", ["-c", ws.cfg]), "--infer_img")


DEPLOY = {
    "threshold_2": (["--threshold", "2"], ["--threshold", "2"]),
    "threshold_neg": (["--threshold", "-1"], ["--threshold", "-1"]),
    "threshold_nan": (["--threshold", "nan"], ["--threshold", "nan"]),
    "threshold_text": (["--threshold", "abc"], ["--threshold", "abc"]),
    "batch_size_neg": (["--batch_size", "-2"], ["--batch_size", "-2"]),
    "batch_size_0": (["--batch_size", "0"], ["--batch_size", "0"]),
    "batch_size_text": (["--batch_size", "two"], ["--batch_size", "two"]),
    "cpu_threads_0": (["--cpu_threads", "0"], ["--cpu_threads", "0"]),
    "device_tpu": (["--device", "TPU"], ["--device", "TPU"]),
    "run_mode_bad": (["--run_mode", "fast"], ["--run_mode", "fast"]),
    "trt_on_cpu": (["--run_mode", "trt_fp32"], ["--run_mode", "trt_fp32"]),
    "bfloat16_without_mkldnn": (["--enable_mkldnn_bfloat16"], ["--enable_mkldnn_bfloat16", "--enable_mkldnn"]),
    "bool_flag_text": (["--save_images", "perhaps"], ["--save_images", "perhaps"]),
}


@pytest.mark.parametrize("name", list(DEPLOY))
def test_deploy_flags(name, ws, model_dir, tmp_path):
    extra, words = DEPLOY[name]
    refused(run_tool("deploy_infer", _deploy(model_dir, ws, tmp_path, *extra)), *words)


@pytest.mark.parametrize("flag, where", [("--image_dir", "nodir"), ("--image_dir", "empty"), ("--video_file", "no.mp4"),
                                         ("--video_file", "text.mp4")])
def test_deploy_missing_inputs(flag, where, ws, model_dir, tmp_path):
    path = tmp_path / where
    if where == "empty":
        path.mkdir()
    elif where == "text.mp4":
        path.write_text("not a video")
    refused(run_tool("deploy_infer", _deploy(model_dir, ws, tmp_path, flag, str(path), image=False)), str(path))


def test_deploy_without_inputs(ws, model_dir, tmp_path):
    refused(run_tool("deploy_infer", _deploy(model_dir, ws, tmp_path, image=False)), "--image_file")


EVAL = {
    "map_type_bad": (["--map_type", "13point"], ["--map_type", "13point"]),
    "confusion_2": (["--confusion_score_thresh", "2"], ["--confusion_score_thresh", "2"]),
    "confusion_nan": (["--confusion_score_thresh", "nan"], ["--confusion_score_thresh", "nan"]),
    "confusion_text": (["--confusion_score_thresh", "abc"], ["--confusion_score_thresh", "abc"]),
}


@pytest.mark.parametrize("name", list(EVAL))
def test_eval_flags(name, ws, tmp_path):
    extra, words = EVAL[name]
    refused(run_tool("eval", base_args("eval", ws, tmp_path) + extra), *words)


ANCHOR = {
    "n_0": (["-n", "0"], ["-n", "0"]),
    "n_neg": (["-n", "-1"], ["-n", "-1"]),
    "n_uneven": (["-n", "2"], ["-n", "2"]),
    "n_text": (["-n", "many"], ["-n", "many"]),
    "size_text": (["-s", "abc"], ["-s", "abc"]),
    "size_0": (["-s", "0"], ["-s", "0"]),
    "size_3": (["-s", "1,2,3"], ["-s", "1,2,3"]),
    "iters_0": (["-i", "0"], ["-i", "0"]),
    "thresh_2": (["-t", "2"], ["-t", "2"]),
    "thresh_0": (["-t", "0"], ["-t", "0"]),
    "method_bad": (["-m", "v9"], ["-m", "v9"]),
}


@pytest.mark.parametrize("name", list(ANCHOR))
def test_anchor_cluster_flags(name, ws, tmp_path):
    extra, words = ANCHOR[name]
    refused(run_tool("anchor_cluster", base_args("anchor_cluster", ws, tmp_path) + extra), *words)


PRUNE_DISTILL = {
    "target_2": (["--target", "2"], ["--target", "2"]),
    "target_neg": (["--target", "-0.5"], ["--target", "-0.5"]),
    "target_nan": (["--target", "nan"], ["--target", "nan"]),
    "epochs_0": (["--epochs", "0"], ["--epochs", "0"]),
    "cpu_threads_0": (["--cpu_threads", "0"], ["--cpu_threads", "0"]),
    "ratios_1.5": (["--sensitivity_ratios", "1.5"], ["--sensitivity_ratios", "1.5"]),
    "ratios_0": (["--sensitivity_ratios", "0"], ["--sensitivity_ratios", "0"]),
}


@pytest.mark.parametrize("name", list(PRUNE_DISTILL))
def test_prune_distill_flags(name, ws, tmp_path):
    extra, words = PRUNE_DISTILL[name]
    refused(run_tool("prune_distill", base_args("prune_distill", ws, tmp_path) + extra), *words)


def test_prune_distill_teacher_missing(ws, tmp_path):
    path = str(tmp_path / "teacher.pdparams")
    refused(run_tool("prune_distill", base_args("prune_distill", ws, tmp_path) + ["--teacher_weights", path]),
            "teacher")


@pytest.mark.parametrize("where", ["nodir", "empty"])
def test_post_quant_calib_dir(where, ws, tmp_path):
    d = tmp_path / where
    if where == "empty":
        d.mkdir()
    refused(run_tool("post_quant", base_args("post_quant", ws, tmp_path) + ["--calib", str(d)]), "--calib", str(d))


@pytest.mark.parametrize("tool, extra, words", [
    ("quant", ["--lite", "mips"], ["--lite", "mips"]),
    ("train", ["--seed", "abc"], ["--seed", "abc"]),
    ("train", ["--slim_config", "no_such_slim.yml"], ["no_such_slim.yml"]),
    ("export", ["--opset_version", "eleven"], ["--opset_version", "eleven"]),
])
def test_other_flags(tool, extra, words, ws, tmp_path):
    refused(run_tool(tool, base_args(tool, ws, tmp_path) + extra), *words)


SERVER = {
    "port_0": (["--port", "0"], ["--port"]),
    "port_70000": (["--port", "70000"], ["--port", "70000"]),
    "port_text": (["--port", "http"], ["--port", "http"]),
    "workers_0": (["--workers", "0"], ["--workers"]),
    "queue_neg": (["--queue", "-1"], ["--queue"]),
    "threshold_nan": (["--threshold", "nan"], ["--threshold", "nan"]),
    "threshold_2": (["--threshold", "2"], ["--threshold", "2"]),
    "max_mb_0": (["--max_mb", "0"], ["--max_mb"]),
    "max_mb_nan": (["--max_mb", "nan"], ["--max_mb"]),
    "max_megapixels_neg": (["--max_megapixels", "-1"], ["--max_megapixels"]),
    "read_timeout_0": (["--read_timeout", "0"], ["--read_timeout"]),
    "samples_dir_missing": (["--samples_dir", "/no/such/dir"], ["--samples_dir", "/no/such/dir"]),
    "public_host_without_token": (["--host", "0.0.0.0"], ["--host", "0.0.0.0", "--api_token"]),
    "device_tpu": (["--device", "TPU"], ["--device", "TPU"]),
    "cpu_threads_0": (["--cpu_threads", "0"], ["--cpu_threads"]),
}


@pytest.mark.parametrize("name", list(SERVER))
def test_server_flags(name, model_dir, monkeypatch):
    monkeypatch.delenv("PPDET_API_TOKEN", raising=False)
    extra, words = SERVER[name]
    refused(run_tool("server", ["--model_dir", model_dir, *extra]), *words)


def test_server_starts_on_good_flags(model_dir):
    """The refusals above are about the flags: the same model dir starts (up to listening)."""
    res = run_tool("server", ["--model_dir", model_dir, "--port", "8866"])
    assert res.code == 0 and "serving" in res.out, res.err


# an output place that cannot be written: a path below a regular file
OUTPUTS = {
    "infer": lambda ws, tmp, bad: ["-c", ws.cfg, "--infer_img", ws.image, "--output_dir", bad],
    "eval": lambda ws, tmp, bad: ["-c", ws.cfg, "--output_eval", bad],
    "export": lambda ws, tmp, bad: ["-c", ws.cfg, "--output_dir", bad],
    "anchor_cluster": lambda ws, tmp, bad: ["-c", ws.cfg, "-s", "64", "-i", "5", "--output",
                                            os.path.join(bad, "anchors.yml")],
    "deploy_infer": None,
}


@pytest.mark.parametrize("tool", list(OUTPUTS))
def test_unwritable_output(tool, ws, model_dir, tmp_path):
    (tmp_path / "file").write_text("a file, not a directory")
    bad = str(tmp_path / "file" / "out")
    args = (["--model_dir", model_dir, "--image_file", ws.image, "--output_dir", bad] if tool == "deploy_infer"
            else OUTPUTS[tool](ws, tmp_path, bad))
    refused(run_tool(tool, args), bad)
    assert (tmp_path / "file").read_text() == "a file, not a directory"

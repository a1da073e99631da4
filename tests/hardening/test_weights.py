"""Bad weights files (random bytes, empty, truncated, text, a pickle that would run code, another
model's weights, ...) as ``weights=``, ``pretrain_weights=``, ``-r`` and broken exported model dirs as
``--model_dir``: exit 2, one ``error:`` line naming the file; a crafted pickle never runs."""
import os
import pickle
import shutil

import numpy as np
import pytest

from .helpers import base_args, fingerprint, kept, refused, run_tool


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def make_weights(kind: str, ws, tmp_path) -> str:
    """A broken ``.pdparams`` of ``kind`` under ``tmp_path`` (with its ``.pdopt`` for -r)."""
    path = str(tmp_path / "bad.pdparams")
    good = open(ws.weights, "rb").read()
    if kind == "random":
        data = np.random.RandomState(0).bytes(4096)
    elif kind == "empty":
        data = b""
    elif kind == "truncated":
        data = good[: len(good) // 2]
    elif kind == "text":
        data = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"
    elif kind == "evil_pickle":
        data = pickle.dumps({"w": _Evil(str(tmp_path / "PWNED"))}, protocol=2)
    elif kind == "list_pickle":
        data = pickle.dumps([1, 2, 3], protocol=2)
    elif kind == "npy":
        np.save(str(tmp_path / "a.npy"), np.zeros(3))
        data = open(str(tmp_path / "a.npy"), "rb").read()
    elif kind == "other_model":
        data = open(ws.other_weights, "rb").read()
    elif kind == "wrong_shapes":
        import paddle

        state = paddle.load(ws.weights)
        state = {k: np.zeros([s + 1 for s in v.shape], "float32") for k, v in state.items()}
        paddle.save(state, path)
        data = open(path, "rb").read()
    elif kind == "missing":
        return str(tmp_path / "no_such.pdparams")
    elif kind == "directory":
        os.makedirs(path)
        return path
    else:
        raise ValueError(kind)
    with open(path, "wb") as f:
        f.write(data)
    shutil.copy(path, path[: -len(".pdparams")] + ".pdopt")
    return path


KINDS = ["random", "empty", "truncated", "text", "evil_pickle", "list_pickle", "npy", "other_model",
         "wrong_shapes", "missing", "directory"]
# how each tool takes a weights file
USES = {
    "eval": ("eval", lambda p: ["-o", f"weights={p}"]),
    "infer": ("infer", lambda p: ["-o", f"weights={p}"]),
    "export": ("export", lambda p: ["-o", f"weights={p}"]),
    "train_pretrain": ("train", lambda p: ["-o", f"pretrain_weights={p}"]),
    "train_resume": ("train", lambda p: ["-r", p]),
    "post_quant": ("post_quant", lambda p: ["-o", f"weights={p}"]),
    "quant_pretrain": ("quant", lambda p: ["-o", f"pretrain_weights={p}"]),
    "prune_distill_teacher": ("prune_distill", lambda p: ["--teacher_weights", p]),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("use", list(USES))
def test_bad_weights(use, kind, ws, tmp_path):
    tool, flag = USES[use]
    path = make_weights(kind, ws, tmp_path)
    before = fingerprint(str(tmp_path))
    res = run_tool(tool, base_args(tool, ws, tmp_path) + flag(path))
    assert not os.path.exists(tmp_path / "PWNED"), "[traceback] the crafted pickle ran code"
    line = refused(res, os.path.basename(path).replace(".pdparams", "") if kind != "missing" else "no_such")
    kept(before, fingerprint(str(tmp_path)))
    assert "Epoch [" not in res.out, f"[silent] trained before refusing: {line}"


def test_eval_without_weights(ws, tmp_path):
    refused(run_tool("eval", base_args("eval", ws, tmp_path) + ["-o", "weights="]), "weights")


# broken exported model dirs: (name, edit(dir), words)
def _write(name, data):
    def edit(d):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    return edit


def _remove(name):
    return lambda d: os.remove(os.path.join(d, name))


def _truncate(name):
    def edit(d):
        p = os.path.join(d, name)
        data = open(p, "rb").read()
        open(p, "wb").write(data[: len(data) // 2])
    return edit


MODEL_DIRS = {
    "no_infer_cfg": (_remove("infer_cfg.yml"), ["infer_cfg.yml"]),
    "infer_cfg_bad_yaml": (_write("infer_cfg.yml", b"arch: [YOLO\nlabel_list: 3\n"), ["infer_cfg.yml"]),
    "infer_cfg_list": (_write("infer_cfg.yml", b"- arch\n- YOLO\n"), ["infer_cfg.yml", "not the mapping"]),
    "infer_cfg_missing_keys": (_write("infer_cfg.yml", b"arch: YOLO\n"), ["infer_cfg.yml", "Preprocess"]),
    "infer_cfg_non_utf8": (_write("infer_cfg.yml", b"arch: YOLO\xff\xfe\n"), ["infer_cfg.yml"]),
    "no_pdmodel": (_remove("model.pdmodel"), ["model.pdmodel"]),
    "pdmodel_random": (_write("model.pdmodel", np.random.RandomState(1).bytes(2048)), ["model.pdmodel"]),
    "pdmodel_empty": (_write("model.pdmodel", b""), ["model.pdmodel"]),
    "pdmodel_text": (_write("model.pdmodel", b"hello world\n" * 20), ["model.pdmodel"]),
    "pdmodel_truncated": (_truncate("model.pdmodel"), ["model.pdmodel"]),
    "no_pdiparams": (_remove("model.pdiparams"), ["model.pdiparams"]),
    "pdiparams_random": (_write("model.pdiparams", np.random.RandomState(2).bytes(4096)), ["model.pdiparams"]),
    "pdiparams_empty": (_write("model.pdiparams", b""), ["model.pdiparams"]),
    "pdiparams_truncated": (_truncate("model.pdiparams"), ["model.pdiparams"]),
}
MODEL_DIRS["pdiparams_extra_bytes"] = (lambda d: open(os.path.join(d, "model.pdiparams"), "ab").write(b"\0" * 64),
                                       ["model.pdiparams"])


@pytest.mark.parametrize("name", MODEL_DIRS)
@pytest.mark.parametrize("tool", ["deploy_infer", "server"])
def test_broken_model_dir(tool, name, ws, broken_model_dir, tmp_path):
    edit, words = MODEL_DIRS[name]
    d = broken_model_dir(edit)
    args = ["--model_dir", d] + (["--image_file", ws.image, "--output_dir", str(tmp_path / "out")]
                                 if tool == "deploy_infer" else ["--port", "1"])
    refused(run_tool(tool, args), d, *words)


@pytest.mark.parametrize("where", ["missing", "empty_dir", "a_file"])
@pytest.mark.parametrize("tool", ["deploy_infer", "server"])
def test_model_dir_not_a_model(tool, where, ws, tmp_path):
    d = str(tmp_path / where)
    if where == "empty_dir":
        os.makedirs(d)
    elif where == "a_file":
        open(d, "w").write("x")
    args = ["--model_dir", d] + (["--image_file", ws.image] if tool == "deploy_infer" else [])
    refused(run_tool(tool, args), d)

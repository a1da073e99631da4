"""Settings accepted and silently ignored: every top-level key is read by something, and a
PaddleDetection setting ppdet_lite does not implement loads only at its no-op value."""
import glob
import os
import re
import textwrap

import pytest

from ppdet_lite.core.config import GLOBAL_KEYS, load_config
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.core.registry import create, register
from ppdet_lite.core.unimplemented import GLOBAL, READER, NotImplementedSetting

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(ROOT, "ppdet_lite")

# a value PaddleDetection users would write to switch each setting on
SWITCHED_ON = {"use_xpu": True, "use_npu": True, "use_mlu": True, "ema_filter_no_grad": True,
               "export_onnx": True, "export_eb": True,
               "slim_method": "LD", "pruner": "UnstructuredPruner",
               "cutmix_epoch": 100, "fuse_normalize": True}


def write(path, text):
    with open(path, "w") as f:
        f.write(textwrap.dedent(text))
    return str(path)


def test_every_table_entry_has_a_switched_on_value():
    assert set(SWITCHED_ON) == set(GLOBAL) | set(READER)
    for key, setting in {**GLOBAL, **READER}.items():
        assert not setting.accepts(SWITCHED_ON[key]), key


@pytest.mark.parametrize("key", sorted(GLOBAL))
def test_global_setting_switched_on_is_refused_naming_key_and_file(tmp_path, key):
    path = write(tmp_path / "pd.yml", f"epoch: 1\n{key}: {SWITCHED_ON[key]!r}\n".replace("'", ""))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: {key}: ") and "ppdet_lite does not implement" in msg
    assert GLOBAL[key].instead in msg


@pytest.mark.parametrize("key", sorted(GLOBAL))
def test_global_setting_at_its_no_op_values_loads(tmp_path, key):
    for value in GLOBAL[key].accepted:
        text = f"{key}: {'null' if value is None else value}\n"
        assert load_config(write(tmp_path / "pd.yml", text))[key] == value


def test_override_switching_a_setting_on_is_refused():
    path = os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml")
    with pytest.raises(ConfigError, match=r"^<overrides>: use_xpu: True: ppdet_lite does not"):
        load_config(path, ["use_xpu=true"])
    assert load_config(path, ["use_xpu=false"])["use_xpu"] is False


@pytest.mark.parametrize("key", sorted(READER))
@pytest.mark.parametrize("reader", ["TrainReader", "EvalReader", "TestReader"])
def test_reader_setting_switched_on_is_refused(tmp_path, reader, key):
    path = write(tmp_path / "r.yml", f"{reader}: {{batch_size: 2, {key}: {SWITCHED_ON[key]}}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: {reader}: {key}: ")
    ok = READER[key].accepted[0]
    assert load_config(write(tmp_path / "r.yml", f"{reader}: {{{key}: {ok}}}\n"))[reader][key] == ok


def test_paddledetection_runtime_settings_load_when_off(tmp_path):
    path = write(tmp_path / "runtime.yml", """
        use_gpu: true
        use_xpu: false
        use_mlu: false
        use_npu: false
        log_iter: 20
        save_dir: output
        snapshot_epoch: 1
        print_flops: false
        print_params: false
        export: {post_process: true, nms: true, benchmark: false, fuse_conv_bn: false}
        TrainReader: {mixup_epoch: -1, cutmix_epoch: -1, mosaic_epoch: -1}
        TestReader: {fuse_normalize: false}
    """)
    assert load_config(path)["use_xpu"] is False


def test_unknown_top_level_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"x\.yml: unknown top-level key 'eval_max_dets': nothing reads it"):
        load_config(write(tmp_path / "x.yml", "eval_max_dets: 100\n"))
    with pytest.raises(ConfigError, match=r"'eval' is a command-line flag of tools/train.py \(--eval\)"):
        load_config(write(tmp_path / "x.yml", "eval: true\n"))
    with pytest.raises(ConfigError, match=r"did you mean \['snapshot_epoch'\]"):
        load_config(write(tmp_path / "x.yml", "snapshot_epochs: 5\n"))
    anchors = load_config(write(tmp_path / "x.yml", "_anchors: &a [[10, 13]]\nepoch: 1\n"))
    assert anchors["_anchors"] == [[10, 13]]


def test_every_global_key_is_read_by_the_package():
    sources = ""
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        if not path.endswith(os.path.join("core", "config.py")):
            with open(path, encoding="utf-8") as f:
                sources += f.read()
    unread = sorted(k for k in GLOBAL_KEYS if not re.search(rf"[\"']{k}[\"']", sources))
    assert unread == [], f"GLOBAL_KEYS nothing reads: {unread}"


def test_every_config_in_the_repo_loads():
    paths = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.yml"), recursive=True))
    assert len(paths) > 20
    for path in paths:
        load_config(path)


@register
class _ToyNMS:
    """A component with a PaddleDetection argument it does not implement."""

    NOT_IMPLEMENTED = {"trt": NotImplementedSetting((False,), "TensorRT's NMS variant",
                                                    "export without trt")}

    def __init__(self, keep_top_k: int = 100):
        self.keep_top_k = keep_top_k


def test_component_argument_not_implemented_loads_only_at_its_no_op_value():
    toy = create("_ToyNMS", {"keep_top_k": 10, "trt": False}, where="m.yml: _ToyNMS")
    assert toy.keep_top_k == 10 and not hasattr(toy, "trt")
    with pytest.raises(ConfigError) as e:
        create("_ToyNMS", {"trt": True}, where="m.yml: section '_ToyNMS'")
    msg = str(e.value)
    assert msg.startswith("m.yml: section '_ToyNMS': _ToyNMS: trt: True: ppdet_lite does not implement trt")
    assert "export without trt" in msg and "set it to False" in msg
    with pytest.raises(TypeError):  # from Python, a dropped argument is no argument at all
        _ToyNMS(trt=False)


def test_declaring_an_argument_both_taken_and_not_implemented_is_refused():
    class _Both:
        NOT_IMPLEMENTED = {"trt": NotImplementedSetting((False,), "x")}

        def __init__(self, trt: bool = False):
            self.trt = trt

    with pytest.raises(ValueError, match=r"_Both: \['trt'\] are both constructor arguments"):
        register(_Both)


def test_bools_and_numbers_are_told_apart():
    setting = NotImplementedSetting((False, None), "x")
    assert setting.accepts(False) and setting.accepts(None)
    assert not setting.accepts(0) and not setting.accepts(True)
    assert not NotImplementedSetting((-1,), "x").accepts(True)


def test_filename_comes_from_the_file_name_or_an_override(tmp_path):
    path = write(tmp_path / "mine.yml", "filename: other\n")
    with pytest.raises(ConfigError, match=r"mine\.yml: filename is the config file's own name"):
        load_config(path)
    path = write(tmp_path / "mine.yml", "epoch: 1\n")
    assert load_config(path)["filename"] == "mine"
    assert load_config(path, ["filename=other"])["filename"] == "other"


def test_every_top_level_key_the_package_reads_is_accepted():
    """A key read as ``cfg.get("key")`` / ``cfg["key"]`` must be settable from a config."""
    import ppdet_lite.modeling  # noqa: F401  (registers the components)
    import ppdet_lite.slim  # noqa: F401
    from ppdet_lite.core.registry import registered

    known = GLOBAL_KEYS | set(GLOBAL) | set(registered())
    read = re.compile(r"\bself\.cfg(?:\.get\(|\[)[\"']([A-Za-z]\w*)[\"']|"
                      r"\bcfg(?:\.get\(|\[)[\"']([A-Z]\w*|[a-z]+_\w+|[a-z]+)[\"']")
    missing = set()
    # where ``cfg`` is a loaded config (deploy / runtime read infer_cfg.yml under that name)
    where = ["engine/*.py", "modeling/*.py", "data/builder.py", "slim/*.py", "export/jit.py", "tools/*.py"]
    for path in [p for w in where for p in glob.glob(os.path.join(PACKAGE, w))]:
        with open(path, encoding="utf-8") as f:
            for groups in read.findall(f.read()):
                missing |= {k for k in groups if k and k not in known}
    assert missing == set()


def test_a_top_level_section_for_an_inline_component_is_refused(tmp_path):
    for name in ("COCODataSet", "RandomFlip", "PiecewiseDecay"):
        with pytest.raises(ConfigError, match=rf"s\.yml: {name} is configured where it is used"):
            load_config(write(tmp_path / "s.yml", f"{name}: {{}}\n"))
    assert load_config(write(tmp_path / "s.yml", "YOLOv3Head: {iou_aware: true}\n"))["YOLOv3Head"]

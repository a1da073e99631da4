"""Shared pieces of the deploy tests: a test image, weights that give boxes, box comparison."""
import os
import socket
import subprocess
import sys
import time

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def calibration_image(h: int = 240, w: int = 320, seed: int = 0) -> np.ndarray:
    """HWC RGB uint8: coloured rectangles on a smooth random background (the tests' image too;
    a flat background would give many positions exactly equal scores)."""
    rng = np.random.RandomState(seed)
    im = cv2.resize(rng.randint(0, 120, (6, 8, 3)).astype(np.uint8), (w, h),
                    interpolation=cv2.INTER_CUBIC)
    for _ in range(6):
        x1, y1 = rng.randint(0, w - 40), rng.randint(0, h - 40)
        x2, y2 = x1 + rng.randint(20, 120), y1 + rng.randint(20, 100)
        cv2.rectangle(im, (x1, y1), (x2, y2), tuple(int(c) for c in rng.randint(80, 255, 3)), -1)
    return im


def spread_scores(model, size: int, seed: int = 0, random_bn: bool = True,
                  image: np.ndarray = None) -> None:
    """Random BN statistics (unless ``random_bn`` is False: weights already set, e.g. by
    tests/darknet/oracle.py ``randomize``), then rescale each head output channel so that, on the
    calibration image, logits sit low with a short tail: scores spread over (0.005, 0.5) for a
    few classes. Works on PaddleDetection's YOLOv3 and ours alike (same attribute names),
    IoU-aware heads included (their na IoU channels come first: median -> -1, max -> 2), on
    YOLOv4Head (output convs after head convs, new_coords' sigmoid after them) and on
    EfficientDetHead (the class / box ``predict`` convs shared by all levels: class logits as
    above, box codes within about ±0.2). ``image`` [1,3,H,W]: the calibration image as the
    model's reader prepares it (default: ``normalized``, ImageNet mean/std at ``size``)."""
    import paddle
    rng = np.random.RandomState(seed)
    if random_bn:
        for name, p in model.state_dict().items():
            if name.endswith("_variance"):
                p.set_value(rng.uniform(0.5, 2.0, p.shape).astype("float32"))
            elif name.endswith("_mean"):
                p.set_value(rng.normal(0, 0.1, p.shape).astype("float32"))
    model.eval()
    yolo = hasattr(model, "yolo_head")
    head = model.yolo_head if yolo else model.head
    convs = list(head.yolo_outputs) if yolo else [head.class_net.predict.conv_pw,
                                                  head.box_net.predict.conv_pw]
    seen = {id(conv): [] for conv in convs}  # each output conv's outputs [C, positions]
    hooks = [conv.register_forward_post_hook(
        lambda layer, inp, out: seen[id(layer)].append(out.numpy()[0].reshape(out.shape[1], -1)))
        for conv in convs]
    im = normalized(calibration_image(), size) if image is None else image
    with paddle.no_grad():
        head(model.neck(model.backbone({"image": paddle.to_tensor(im)})))
    for h in hooks:
        h.remove()
    nc = head.num_classes
    for k, conv in enumerate(convs):
        out = np.concatenate(seen[id(conv)], 1)
        if not yolo:  # class logits (anchor-major, nc per anchor) or box codes
            na = out.shape[0] // (nc if k == 0 else 4)
            lo, hi = np.full((na, nc), -6.0), np.full((na, nc), -6.0)
            # one top per anchor: the 9 anchors of a cell would tie at the same maximum
            hi[:, rng.permutation(nc)[:4]] = rng.uniform(0.0, 1.5, (na, 4))
            if k == 1:
                lo, hi = np.zeros((na, 4)), np.full((na, 4), 0.2)
            _spread(conv, out, lo.reshape(-1), hi.reshape(-1))
            continue
        iou = 1 if getattr(head, "iou_aware", False) else 0
        na = out.shape[0] // (5 + iou + nc)
        # logit' = lo + (logit - median) * gain, mapping median -> lo and max -> hi
        lo, hi = np.zeros((na, 5 + nc)), np.full((na, 5 + nc), 1.0)
        lo[:, 4:], hi[:, 4] = -6.0, 0.5                 # objectness and classes
        hi[:, 5:] = -6.0
        hi[:, 5 + rng.permutation(nc)[:4]] = rng.uniform(0.0, 1.5, (1, 4))  # 4 "seen" classes
        lo, hi = lo.reshape(-1), hi.reshape(-1)
        if iou:
            lo, hi = np.concatenate([np.full(na, -1.0), lo]), np.concatenate([np.full(na, 2.0), hi])
        _spread(conv, out, lo, hi)


def _spread(conv, out: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Rescale ``conv``'s output channels (outputs ``out`` [C, P]): median -> lo, max -> hi."""
    med, top = np.median(out, 1), out.max(1)
    gain = (hi - lo) / (top - med + 1e-6)
    w = conv.weight.numpy() * gain.reshape(-1, 1, 1, 1)
    bias = lo - (med - conv.bias.numpy()) * gain
    conv.weight.set_value(w.astype("float32"))
    conv.bias.set_value(bias.astype("float32"))


def normalized(im: np.ndarray, size: int) -> np.ndarray:
    """HWC uint8 RGB -> [1,3,size,size] float32 as the Tiny TestReader does (interp 2 = cubic)."""
    x = cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC).astype("float32") / 255.0
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype("float32")


def same_boxes(a: np.ndarray, b: np.ndarray, score_tol: float = 1e-4, box_tol: float = 1e-2,
               keep_top_k: int = 100) -> tuple:
    """Assert ``a``, ``b`` ([K,6]) hold the same boxes in any order. When ``a`` is cut at
    keep_top_k, rows tied within ``score_tol`` with the cut may be swapped out: those are not
    required to match. Returns (max score diff, max coord diff in pixels) over the matched rows."""
    from ppdet_lite.export.onnx_export import match_boxes
    a, b = np.asarray(a).reshape(-1, 6), np.asarray(b).reshape(-1, 6)
    assert len(a) == len(b), f"{len(a)} vs {len(b)} boxes"
    cut = a[:, 1].min() + score_tol if len(a) >= keep_top_k else -1.0
    sure_a, sure_b = a[a[:, 1] > cut], b[b[:, 1] > cut]
    assert match_boxes(sure_a, b, score_tol, box_tol) == len(sure_a)
    assert match_boxes(sure_b, a, score_tol, box_tol) == len(sure_b)
    if not len(sure_a):
        return 0.0, 0.0
    diff = np.abs(sure_a[:, None, :] - b[None, :, :]).astype("float64")
    diff[diff[..., 0] != 0] = np.inf  # other class: never the partner
    best = (diff[..., 1] / score_tol + diff[..., 2:].max(-1) / box_tol).argmin(1)
    pair = diff[np.arange(len(sure_a)), best]
    return float(pair[:, 1].max()), float(pair[:, 2:].max())


def check_lite_x86(model_dir: str, image_files, lite_python: str, run_boxes, out_dir: str,
                   min_boxes: int = 10) -> tuple:
    """Convert ``model_dir`` to an x86 .nb, run it with deploy/lite/run_lite.py on every image and
    assert the boxes equal Paddle Inference's; -> (max score diff, max coord diff)."""
    import json

    from ppdet_lite.export import lite
    out = lite.convert(model_dir, "x86", out_dir)
    assert {"model.nb", "infer_cfg.json", "det_runtime_config.json"} <= set(os.listdir(out))
    result = out_dir + ".json"
    run([lite_python, "deploy/lite/run_lite.py", "--lite_dir", out, "--threshold", "0",
         "--save_json", result, "--image_file", *image_files])
    diffs = []
    with open(result) as f:
        items = json.load(f)
    for item, path in zip(items, image_files):
        ref = run_boxes(model_dir, path)
        assert len(ref) > min_boxes
        diffs.append(same_boxes(ref, json_rows(item), score_tol=1e-4, box_tol=1e-2))
    return tuple(np.max(diffs, 0))


def json_rows(record: dict) -> np.ndarray:
    """[K,6] rows (class, score, x1, y1, x2, y2) of a ``Detections.to_json()`` dict."""
    from ppdet_lite.runtime.result import Detections
    return Detections(np.array(record["boxes"], np.float32).reshape(-1, 4),
                      np.array(record["scores"], np.float32), np.array(record["class_ids"]),
                      record["class_names"]).rows()


def dygraph_boxes(out: dict) -> np.ndarray:
    """Rows of one image from a dygraph {'bbox', 'bbox_num'} with the empty-image dummy dropped."""
    from ppdet_lite.runtime.result import keep_rows
    rows = out["bbox"].reshape(-1, 6)[:int(out["bbox_num"][0])]
    return rows[keep_rows(rows, 0.0)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: str, *flags: str, env=None):
    """``deploy/serving/server.py`` on a free loopback port, once ``/health`` answers:
    (process, base URL, port). Stop it with ``stop_server``."""
    from ppdet_lite.deploy.client import request

    port = free_port()
    proc = subprocess.Popen([PYTHON, "deploy/serving/server.py", "--model_dir", model_dir, "--port", str(port),
                             *flags], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, **(env or {})))
    url, deadline = f"http://127.0.0.1:{port}", time.time() + 90
    while True:
        try:
            if request(url + "/health", timeout=2)[0] == 200:
                return proc, url, port
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"server did not start:\n{stop_server(proc)[-3000:]}")
        time.sleep(0.3)


def stop_server(proc) -> str:
    """Terminate (then kill) a ``start_server`` process; returns what it printed."""
    proc.terminate()
    try:
        return proc.communicate(timeout=20)[0] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0] or ""
    except ValueError:  # output already read
        return ""


def run(args, timeout: float = 240, **kw) -> subprocess.CompletedProcess:
    """Run a command from the repo root; fail the test with its output on a non-zero exit."""
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, \
        f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc

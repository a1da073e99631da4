"""deploy/serving/server.py as a real process on a loopback port: boxes, bad input, concurrency."""
import zlib  # noqa: F401  (before paddle)
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from .helpers import PYTHON, REPO, free_port, same_boxes

sys.path.insert(0, os.path.join(REPO, "deploy", "serving"))
from client import predict, request  # noqa: E402


@pytest.fixture(scope="module")
def server(ours_tiny):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([PYTHON, "deploy/serving/server.py", "--model_dir", ours_tiny.dir,
                             "--port", str(port), "--workers", "2", "--max_mb", "1",
                             "--threshold", "0.2"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                if request(url + "/health", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start:\n{proc.stdout.read()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def to_rows(body: dict) -> np.ndarray:
    return np.array([[b["class_id"], b["score"], *b["bbox"]] for b in body["boxes"]],
                    np.float32).reshape(-1, 6)


def test_predict_raw_and_multipart(server, image_files, run_boxes, ours_tiny):
    data = open(image_files[0], "rb").read()
    status, body = predict(server, data)
    assert status == 200 and body["threshold"] == 0.2 and body["image_size"] == [240, 320]
    ref = run_boxes(ours_tiny.dir, image_files[0], 0.2)
    assert body["num_boxes"] == len(ref) > 0
    same_boxes(ref, to_rows(body), 1e-5, 1e-3)
    assert body["boxes"][0]["class_name"] == f"class{body['boxes'][0]['class_id']}"
    status, body = predict(server, open(image_files[1], "rb").read(), threshold=0.05,
                           multipart=True)
    assert status == 200 and body["image_size"] == [200, 300]
    same_boxes(run_boxes(ours_tiny.dir, image_files[1], 0.05), to_rows(body), 1e-5, 1e-3)


def test_health_and_metadata(server):
    status, body = request(server + "/health")
    assert status == 200 and body["status"] == "ok" and body["workers"] == 2
    status, meta = request(server + "/metadata")
    assert status == 200 and meta["arch"] == "YOLO" and meta["input_size"] == [192, 192]
    assert meta["num_classes"] == 80 and meta["labels"][3] == "class3"
    assert meta["max_bytes"] == 2 ** 20


def test_bad_input_is_4xx_and_server_keeps_serving(server, image_files):
    status, body = predict(server, b"this is not an image")
    assert status == 415 and "cannot decode image bytes" in body["detail"]
    status, body = predict(server, b"")
    assert status == 400 and "empty body" in body["detail"]
    status, body = predict(server, os.urandom(2 ** 20 + 10))
    assert status == 413 and "exceeds the limit" in body["detail"]
    status, body = predict(server, os.urandom(2 ** 20 + 10), multipart=True)
    assert status == 413
    status, body = predict(server, open(image_files[0], "rb").read(), threshold=1.5)
    assert status == 400 and "outside [0, 1]" in body["detail"]
    status, body = request(server + "/predict", b"--x--\r\n", "multipart/form-data; boundary=x")
    assert status == 400
    assert predict(server, open(image_files[0], "rb").read())[0] == 200


def test_100_concurrent_requests(server, image_files):
    images = [open(p, "rb").read() for p in image_files]
    first = [to_rows(predict(server, im)[1]) for im in images]

    def call(i):
        status, body = predict(server, images[i % 2], multipart=bool(i % 3 == 0))
        return i, status, body

    t = time.time()
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, range(100)))
    elapsed = time.time() - t
    assert all(status == 200 for _, status, _ in results)
    for i, _, body in results:  # every answer equals the serial one: no cross-talk between workers
        same_boxes(first[i % 2], to_rows(body), 1e-6, 1e-4)
    assert elapsed < 120
    assert request(server + "/health")[1]["idle_workers"] == 2

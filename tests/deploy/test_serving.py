"""deploy/serving/server.py (ppdet_lite.deploy.serving) as a real process on a loopback port:
boxes, bad input, concurrency."""
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import pytest

from ppdet_lite.deploy.client import predict, request

from .helpers import json_rows, same_boxes, start_server, stop_server


@pytest.fixture(scope="module")
def server(ours_tiny):
    proc, url, _ = start_server(ours_tiny.dir, "--workers", "2", "--max_mb", "1", "--threshold", "0.2",
                                "--queue", "16")
    yield url
    stop_server(proc)


def test_predict_raw_and_multipart(server, image_files, run_boxes, ours_tiny):
    data = open(image_files[0], "rb").read()
    status, body = predict(server, data)
    assert status == 200 and body["threshold"] == 0.2 and body["image_size"] == [240, 320]
    ref = run_boxes(ours_tiny.dir, image_files[0], 0.2)
    assert body["num_boxes"] == len(ref) > 0
    same_boxes(ref, json_rows(body), 1e-5, 1e-3)
    assert body["class_names"][0] == f"class{body['class_ids'][0]}"
    status, body = predict(server, open(image_files[1], "rb").read(), threshold=0.05,
                           multipart=True)
    assert status == 200 and body["image_size"] == [200, 300]
    same_boxes(run_boxes(ours_tiny.dir, image_files[1], 0.05), json_rows(body), 1e-5, 1e-3)


def test_health_and_metadata(server):
    status, body = request(server + "/health")
    assert status == 200 and body["status"] == "ok" and body["workers"] == 2
    assert body["idle_workers"] <= 2 and body["peak_busy_workers"] <= 2
    status, meta = request(server + "/metadata")
    assert status == 200 and meta["arch"] == "YOLO" and meta["input_size"] == [192, 192]
    assert meta["num_classes"] == 80 and meta["labels"][3] == "class3"
    assert meta["max_bytes"] == 2 ** 20


def test_bad_input_is_4xx_and_server_keeps_serving(server, image_files):
    status, body = predict(server, b"this is not an image")
    assert status == 415 and "cannot decode image bytes" in body["detail"]
    status, body = predict(server, b"")
    assert status == 400 and "empty body" in body["detail"]
    whole = cv2.imencode(".jpg", cv2.imread(image_files[0]))[1].tobytes()
    status, body = predict(server, whole[:len(whole) // 2])  # OpenCV decodes it, with grey rows
    assert status == 415 and "truncated JPEG" in body["detail"]
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
    first = [json_rows(predict(server, im)[1]) for im in images]

    def call(i):
        status, body = predict(server, images[i % 2], multipart=bool(i % 3 == 0))
        return i, status, body

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(call, range(100)))
    assert all(status == 200 for _, status, _ in results)
    for i, _, body in results:  # every answer equals the serial one: no cross-talk between workers
        same_boxes(first[i % 2], json_rows(body), 1e-6, 1e-4)
    health = request(server + "/health")[1]
    # both predictors served at the same time, never more than --workers, all back in the pool
    assert health["peak_busy_workers"] == 2 and health["idle_workers"] == 2

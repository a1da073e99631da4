"""The server pushes back: limits enforced while the body streams, a pixel limit read from the
image header, a bounded queue answering 503 + Retry-After, body timeouts, an API token beyond
loopback, and a bounded load test (loopback only, stops by itself) with /health answering fast."""
import http.client
import os
import socket
import struct
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from ppdet_lite.deploy.client import multipart_body, predict, request

from .helpers import PYTHON, REPO, calibration_image, free_port, start_server, stop_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def limited(ours_tiny):
    proc, url, port = start_server(ours_tiny.dir, "--workers", "1", "--queue", "2", "--max_mb", "2",
                            "--max_megapixels", "4", "--read_timeout", "2")
    yield url, port, proc
    log = stop_server(proc)
    assert "Traceback" not in log, log[-3000:]  # no request, however bad, left a traceback


def png_bomb(w=20000, h=20000) -> bytes:
    """A small, valid-looking PNG whose header declares ``w x h`` pixels (deflate of zeros)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\0" * (1 + w * 3) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def jpeg(h=480, w=640, seed=0) -> bytes:
    return cv2.imencode(".jpg", cv2.resize(calibration_image(seed=seed), (w, h)))[1].tobytes()


def raw_http(port, head: bytes, body_parts=(), pause=0.0, read=True):
    """Send ``head`` then each body part (pausing between them); the status line, or None."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                time.sleep(pause)
                sock.sendall(part)
        except OSError:
            pass
        if not read:
            return None
        data = sock.recv(65536)
        return data.split(b"\r\n", 1)[0].decode()


def test_a_decompression_bomb_is_refused_from_its_header(limited):
    url, _, _ = limited
    status, body = predict(url, png_bomb())
    assert status == 413 and "20000x20000 pixels exceeds the limit of 4000000 pixels" in body["detail"]
    status, body = predict(url, png_bomb(40000, 40000), multipart=True)
    assert status == 413
    assert predict(url, jpeg())[0] == 200


def test_undecodable_images_are_415_not_500(limited):
    url, _, _ = limited
    truncated = png_bomb(100, 100)[:60]  # a header OpenCV cannot decode past
    status, body = predict(url, truncated)
    assert status == 415 and "cannot decode" in body["detail"]


def test_threshold_as_a_file_part_is_400(limited):
    url, _, _ = limited
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"threshold\"; filename=\"t.txt\"\r\n\r\n0.3\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n").encode() \
        + jpeg() + f"\r\n--{boundary}--\r\n".encode()
    status, detail = request(url + "/predict", body, f"multipart/form-data; boundary={boundary}")
    assert status == 400 and "not a file" in detail["detail"]


def test_a_chunked_upload_is_limited_while_it_streams(limited):
    url, port, proc = limited
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    chunk = os.urandom(256 << 10)
    sent = {"n": 0}

    def body():
        for _ in range(64):  # 16 MB offered; the limit is 2 MB
            sent["n"] += len(chunk)
            yield chunk
    data, ctype = multipart_body(b"", "x.jpg", {})
    try:
        conn.request("POST", "/predict", body=body(), headers={"Content-Type": ctype}, encode_chunked=True)
        status = conn.getresponse().status
    except (BrokenPipeError, ConnectionResetError):
        status = 413  # the server answered and closed while we were still sending
    assert status == 413
    rss = int(open(f"/proc/{proc.pid}/status").read().split("VmRSS:")[1].split()[0])
    assert rss < 2_000_000, f"server RSS {rss} kB"  # it never held the 16 MB body


def test_a_slow_body_times_out_with_408(limited):
    _, port, _ = limited
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 100000\r\n\r\n")
    t = time.time()
    status = raw_http(port, head, [b"\xff\xd8" + b"0" * 100], pause=0.2)
    assert status.startswith("HTTP/1.1 408") and time.time() - t < 10


def test_a_client_leaving_mid_body_leaves_no_traceback(limited):
    url, port, _ = limited
    head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 100000\r\n\r\n")
    raw_http(port, head, [b"\xff\xd8" + b"0" * 1000], read=False)
    time.sleep(0.5)
    assert predict(url, jpeg())[0] == 200  # and the module fixture checks the log for tracebacks


def test_beyond_loopback_an_api_token_is_required(ours_tiny):
    proc = subprocess.run([PYTHON, "deploy/serving/server.py", "--model_dir", ours_tiny.dir, "--host", "0.0.0.0",
                           "--port", str(free_port())], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PPDET_API_TOKEN"})
    assert proc.returncode == 2 and "--api_token" in proc.stderr and "Traceback" not in proc.stderr
    server, url, _ = start_server(ours_tiny.dir, "--workers", "1", env={"PPDET_API_TOKEN": "s3cret"})
    try:
        assert predict(url, jpeg())[0] == 401
        assert request(url + "/metadata")[0] == 401
        assert request(url + "/health")[0] == 200  # liveness stays open
        req = __import__("urllib.request").request.Request(url + "/predict", data=jpeg(), method="POST",
                                                           headers={"Authorization": "Bearer s3cret"})
        with __import__("urllib.request").request.urlopen(req, timeout=60) as resp:
            assert resp.status == 200
        assert request(url + "/metadata?token=s3cret")[0] == 200
    finally:
        stop_server(server)


def test_bad_model_dir_is_one_line_exit_2(tmp_path):
    (tmp_path / "model.pdmodel").write_bytes(os.urandom(200))
    (tmp_path / "model.pdiparams").write_bytes(b"")
    (tmp_path / "infer_cfg.yml").write_text("arch: YOLO\nmode: paddle\nPreprocess: []\nlabel_list: [a]\n")
    for model_dir in (str(tmp_path / "missing"), str(tmp_path)):
        proc = subprocess.run([PYTHON, "deploy/serving/server.py", "--model_dir", model_dir, "--port",
                               str(free_port())], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


HEALTH_PROBE = """
import sys, time, urllib.request
while True:
    t = time.perf_counter()
    with urllib.request.urlopen(sys.argv[1] + "/health", timeout=10) as r:
        r.read()
    print(r.status, (time.perf_counter() - t) * 1000, flush=True)
    time.sleep(0.05)
"""


def rss_kb(pid):
    return int(open(f"/proc/{pid}/status").read().split("VmRSS:")[1].split()[0])


def test_200_mixed_concurrent_requests(ours_tiny):
    """Valid, large, bombs, chunked and slow clients at once: no 5xx but 503s past the queue bound,
    /health under 100 ms throughout, memory back near its warm level afterwards."""
    proc, url, port = start_server(ours_tiny.dir, "--workers", "2", "--queue", "8", "--max_mb", "4",
                            "--max_megapixels", "8", "--read_timeout", "3")
    try:
        small, large, bomb = jpeg(), jpeg(1500, 2000, seed=1), png_bomb()
        for _ in range(4):
            predict(url, large)
        warm = rss_kb(proc.pid)
        slow_head = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 5000\r\n\r\n")

        def call(i):
            kind = i % 5
            try:
                if kind == 0:
                    return "valid", predict(url, small)[0]
                if kind == 1:
                    return "large", predict(url, large, multipart=True)[0]
                if kind == 2:
                    return "bomb", predict(url, bomb)[0]
                if kind == 3:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    conn.request("POST", "/predict", body=iter([small[:1000], small[1000:]]),
                                 headers={"Content-Type": "application/octet-stream"}, encode_chunked=True)
                    return "chunked", conn.getresponse().status
                line = raw_http(port, slow_head, [b"\xff\xd8", b"0" * 10], pause=1.0)
                return "slow", int(line.split()[1])
            except (ConnectionError, OSError) as e:
                return "error", repr(e)

        # /health is polled from another process, so this one's 200 client threads do not slow the probe
        watcher = subprocess.Popen([PYTHON, "-c", HEALTH_PROBE, url], stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        # the 200 clients run at a low OS priority: this measures the server's answer, not the clients' turn
        with ThreadPoolExecutor(max_workers=200, initializer=os.setpriority,
                                initargs=(os.PRIO_PROCESS, 0, 15)) as pool:
            results = list(pool.map(call, range(200)))
        watcher.terminate()
        probes = [line.split() for line in watcher.communicate(timeout=20)[0].split("\n") if line]
        assert len(probes) > 10 and all(status == "200" for status, _ in probes), probes[:5]
        health_ms = [float(ms) for _, ms in probes]
        statuses = [s for _, s in results]
        assert all(isinstance(s, int) for s in statuses), [r for r in results if not isinstance(r[1], int)][:5]
        assert not [s for s in statuses if s >= 500 and s != 503], statuses
        assert 503 in statuses  # 200 at once is past --workers 2 + --queue 8
        assert all(s in (200, 503) for k, s in results if k in ("valid", "large", "chunked"))
        assert all(s in (413, 503) for k, s in results if k == "bomb")
        assert all(s in (408, 503) for k, s in results if k == "slow")
        # under 100 ms throughout, allowing 2 % of the probes to a shared CI machine's scheduling hiccups
        assert np.percentile(health_ms, 98) < 100 and max(health_ms) < 1000, \
            f"/health: p98 {np.percentile(health_ms, 98):.0f} ms, max {max(health_ms):.0f} ms"
        assert request(url + "/health")[1]["admitted"] == 0
        after = rss_kb(proc.pid)
        assert after < 1.2 * warm, f"RSS {after} kB after the load vs {warm} kB warm"
        assert predict(url, small)[0] == 200
    finally:
        log = stop_server(proc)
    assert "Traceback" not in log, log[-3000:]

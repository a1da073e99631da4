"""Weights by URL: downloaded once into the cache from a real local HTTP server; offline errors."""
import functools
import http.server
import os
import threading

import paddle
import pytest

from ppdet_lite.core.errors import ConfigError
from ppdet_lite.engine.checkpoint import load_weights
from ppdet_lite.utils import download as dl


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, hits
    httpd.shutdown()


def test_url_downloads_once_then_uses_the_cache(server, tmp_path, monkeypatch):
    base, root, hits = server
    monkeypatch.setattr(dl, "WEIGHTS_HOME", str(tmp_path / "cache"))
    layer = paddle.nn.Linear(3, 2)
    paddle.save(layer.state_dict(), str(root / "lin.pdparams"))
    other = paddle.nn.Linear(3, 2)
    load_weights(other, f"{base}/lin.pdparams")
    load_weights(other, f"{base}/lin.pdparams")
    assert hits == ["/lin.pdparams"]
    assert float((other.weight - layer.weight).abs().max()) == 0.0
    assert os.path.isfile(dl.cached_path(f"{base}/lin.pdparams"))
    assert not [f for f in os.listdir(tmp_path / "cache") if f.endswith(".part")]


def test_offline_url_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "WEIGHTS_HOME", str(tmp_path / "cache"))
    url = "http://127.0.0.1:9/models/ppyolo_tiny.pdparams"   # port 9 (discard): refused at once
    with pytest.raises(ConfigError) as e:
        load_weights(paddle.nn.Linear(3, 2), url)
    msg = str(e.value)
    assert url in msg and dl.cached_path(url) in msg and "ppyolo_tiny.pdparams" in msg
    assert not os.listdir(tmp_path / "cache")    # no partial file left behind

"""Minimal client for the HTTP detection server (``ppdet_lite.deploy.serving``); standard library
only, so it also runs as a copied script where ppdet_lite is not installed.

    python deploy/serving/client.py --url http://127.0.0.1:8866 --image_file demo.jpg \
        [--threshold 0.3] [--multipart]
"""
import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Optional, Tuple


def multipart_body(data: bytes, filename: str, fields: dict) -> Tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload with a ``file`` part."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                 + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(url: str, data: Optional[bytes] = None, content_type: str = "application/octet-stream",
            timeout: float = 60) -> Tuple[int, dict]:
    """(HTTP status, JSON body) for a GET (data None) or POST; 4xx/5xx are returned, not raised."""
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, _json(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, _json(e.read())


def _json(body: bytes) -> dict:
    """The JSON body, or ``{"detail": text}`` for a plain-text answer (a proxy's, uvicorn's 503)."""
    try:
        return json.loads(body or b"{}")
    except ValueError:
        return {"detail": body.decode("utf-8", "replace")}


def predict(url: str, image: bytes, threshold: Optional[float] = None, multipart: bool = False,
            filename: str = "image.jpg") -> Tuple[int, dict]:
    """POST ``image`` bytes to ``url``/predict as a raw body or a multipart ``file`` field."""
    if multipart:
        fields = {} if threshold is None else {"threshold": threshold}
        body, ctype = multipart_body(image, filename, fields)
        return request(url.rstrip("/") + "/predict", body, ctype)
    query = "" if threshold is None else "?" + urllib.parse.urlencode({"threshold": threshold})
    return request(url.rstrip("/") + "/predict" + query, image)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:8866")
    ap.add_argument("--image_file", required=True)
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--multipart", action="store_true", help="send as multipart/form-data")
    args = ap.parse_args(argv)
    with open(args.image_file, "rb") as f:
        status, body = predict(args.url, f.read(), args.threshold, args.multipart,
                               os.path.basename(args.image_file))
    print(status, json.dumps(body, indent=2))


if __name__ == "__main__":
    main()

"""HTTP detection server (FastAPI on uvicorn) over an exported model dir.

    python deploy/serving/server.py --model_dir output_inference/ppyolo_tiny_650e_coco \
        [--host 127.0.0.1] [--port 8866] [--workers 2]

Endpoints:
  POST /predict   body = raw image bytes (JPEG/PNG/BMP), or multipart/form-data with a ``file``
                  field; optional ``threshold`` (query or form field, 0..1).
                  -> {"boxes": [[x1, y1, x2, y2], ...], "scores", "class_ids", "class_names"
                      (a ``Detections`` record as JSON), "num_boxes", "image_size": [h, w],
                      "threshold", "inference_ms"}
  GET  /health    -> {"status": "ok", "workers", "idle_workers", "peak_busy_workers"}
  GET  /metadata  -> model dir name, arch, labels, input size, preprocess, limits
  GET  /          -> a web page: upload, drop or pick a sample image, see the boxes, filter them
                     with a threshold slider (plain HTML/JS in ``deploy/page/``, no external asset)
  GET  /samples   -> names of the sample images (``--samples_dir``); /samples/<name> -> the image
Bad input (empty body, not an image, over --max_mb, bad threshold) -> 4xx {"detail": "..."}.

The model is loaded once; ``--workers`` predictors (``clone()``s sharing its weights: a Paddle
predictor is not thread-safe) serve requests from a queue, each in a worker thread.
"""
import asyncio
import contextlib
import hmac
import os
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Optional

import cv2
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from starlette.requests import ClientDisconnect

from ..runtime.images import encoded_size, list_images

from .predictor import DetectorPredictor


class PredictorPool:
    """``size`` predictors over one loaded model; ``with pool.acquire() as det:`` blocks until one
    is free, so at most ``size`` inferences run at once. ``peak_busy``: the most predictors that
    were in use at the same time so far."""

    def __init__(self, model_dir: str, size: int = 2, **predictor_kwargs):
        first = DetectorPredictor(model_dir, **predictor_kwargs)
        self.size = size
        self.first = first
        self.idle: "queue.Queue[DetectorPredictor]" = queue.Queue()
        self.idle.put(first)
        for _ in range(size - 1):
            self.idle.put(first.clone())
        self.busy = self.peak_busy = 0
        self._count = threading.Lock()

    @contextlib.contextmanager
    def acquire(self) -> Iterator[DetectorPredictor]:
        det = self.idle.get()
        with self._count:
            self.busy += 1
            self.peak_busy = max(self.peak_busy, self.busy)
        try:
            yield det
        finally:
            with self._count:
                self.busy -= 1
            self.idle.put(det)


def parse_threshold(value, default: float) -> float:
    if value is None or value == "":
        return default
    if not isinstance(value, str):  # e.g. a file part named 'threshold'
        raise HTTPException(400, "threshold must be a form field or query value, not a file")
    try:
        t = float(value)
    except ValueError:
        raise HTTPException(400, f"threshold={value!r} is not a number; use a value in [0, 1]")
    if not 0.0 <= t <= 1.0:  # NaN fails this too
        raise HTTPException(400, f"threshold={value} is outside [0, 1]")
    return t


async def refuse_too_large(request: Request, max_bytes: int, size: int = 0) -> None:
    """413 for a body over ``max_bytes``. The rest is read and dropped first (up to 64 MB or 4x the
    limit, never kept), so the client reads the answer instead of a reset connection."""
    cap = max(64 << 20, 4 * max_bytes)
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            break
    raise HTTPException(413, f"body exceeds the limit of {max_bytes} bytes (server flag --max_mb)")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, counted while it streams in: 413 as soon as it passes ``max_bytes`` (or its
    Content-Length says it will), without holding more than that in memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        await refuse_too_large(request, max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            chunks.clear()
            await refuse_too_large(request, max_bytes, size)
        chunks.append(chunk)
    return b"".join(chunks)


async def image_and_threshold(request: Request, max_bytes: int, query_threshold):
    """(image bytes, threshold value) from a raw body or a multipart/form-data upload."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        return await read_body(request, max_bytes), query_threshold
    body = await read_body(request, max_bytes + 65536)  # + room for the part headers

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form()
    except Exception as e:  # noqa: BLE001  (python-multipart's parse errors have no common base)
        raise HTTPException(400, f"malformed multipart body: {e}") from None
    upload = form.get("file") or form.get("image")
    if upload is None or isinstance(upload, str):
        raise HTTPException(400, "multipart body has no file field named 'file' (or 'image')")
    data = await upload.read()
    if len(data) > max_bytes:
        raise HTTPException(413, f"file of {len(data)} bytes exceeds the limit of {max_bytes} bytes "
                                 "(server flag --max_mb)")
    return data, query_threshold if query_threshold is not None else form.get("threshold")


def _lower_priority() -> None:
    """Run this (inference) thread at a lower OS priority than the event loop, so that /health,
    the page and the 503 answers stay quick while the CPU cores are busy with the model."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at the normal priority
        pass


PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page", "index.html")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Limits:
    """What the server accepts: body bytes, decoded pixels, requests waiting beyond the busy
    predictors (past it: 503 with Retry-After), seconds to receive a body (past it: 408)."""

    max_bytes: int = 10 << 20
    max_pixels: int = 40_000_000
    queue: int = 8
    read_timeout: float = 10.0


def create_app(pool: PredictorPool, limits: Limits = Limits(), default_threshold: float = 0.5,
               samples_dir: Optional[str] = None, api_token: Optional[str] = None) -> FastAPI:
    """The app. Inference runs on its own ``pool.size`` threads, so ``/health`` and the page never
    wait behind it; at most ``pool.size + limits.queue`` requests are admitted at once."""
    app = FastAPI(title="ppdet_lite detector", version="1.0")
    cfg = pool.first.cfg
    with open(PAGE, encoding="utf-8") as f:
        page = f.read()
    samples = {os.path.basename(p): p for p in list_images(samples_dir)} if samples_dir else {}
    executor = ThreadPoolExecutor(max_workers=pool.size, thread_name_prefix="infer", initializer=_lower_priority)
    admitted = {"now": 0, "refused": 0}
    capacity = pool.size + limits.queue

    def authorize(request: Request) -> None:
        if api_token is None:
            return
        given = request.headers.get("x-api-token") or request.query_params.get("token") or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        if not hmac.compare_digest(given.encode(), api_token.encode()):
            raise HTTPException(401, "missing or wrong API token: send 'Authorization: Bearer <token>' "
                                     "(or X-API-Token, or ?token= for the page)")

    @app.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.get("/samples")
    async def sample_names(request: Request) -> list:
        authorize(request)
        return sorted(samples)

    @app.get("/samples/{name}")
    async def sample(name: str, request: Request) -> FileResponse:
        authorize(request)
        if name not in samples:  # only the listed files: no path reaches the disk from the URL
            raise HTTPException(404, f"no sample named {name!r}; GET /samples lists them")
        return FileResponse(samples[name])

    def infer(data: bytes, threshold: float) -> dict:
        with pool.acquire() as det:
            t = time.perf_counter()
            try:
                inputs = det.preprocess([data])
            except (ValueError, cv2.error) as e:  # not an image OpenCV can decode
                raise HTTPException(415, f"{e}; send a JPEG, PNG, BMP or WebP image") from None
            found = det.postprocess(det.run(), threshold)[0]
            ms = (time.perf_counter() - t) * 1000
        h, w = (inputs["im_shape"][0] / inputs["scale_factor"][0]).round().astype(int).tolist()
        return {**found.to_json(), "num_boxes": len(found.scores), "image_size": [h, w],
                "threshold": threshold, "inference_ms": round(ms, 3)}

    @app.post("/predict")
    async def predict(request: Request, threshold: Optional[str] = None):
        authorize(request)
        if admitted["now"] >= capacity:
            admitted["refused"] += 1
            raise HTTPException(503, f"busy: {capacity} requests in progress (--workers {pool.size} + "
                                     f"--queue {limits.queue}); retry shortly", headers={"Retry-After": "1"})
        admitted["now"] += 1
        try:
            try:
                data, threshold = await asyncio.wait_for(
                    image_and_threshold(request, limits.max_bytes, threshold), limits.read_timeout)
            except asyncio.TimeoutError:
                raise HTTPException(408, f"the request body did not arrive within {limits.read_timeout:g} s "
                                         "(server flag --read_timeout)") from None
            except ClientDisconnect:
                return Response(status_code=400)  # nobody is listening; nothing to log
            if not data:
                raise HTTPException(400, "empty body: POST the image bytes, or multipart/form-data "
                                         "with a 'file' field")
            t = parse_threshold(threshold, default_threshold)
            size = encoded_size(data)
            if size is not None and size[0] * size[1] > limits.max_pixels:
                raise HTTPException(413, f"image of {size[0]}x{size[1]} pixels exceeds the limit of "
                                         f"{limits.max_pixels} pixels (server flag --max_megapixels)")
            return await asyncio.get_running_loop().run_in_executor(executor, infer, data, t)
        finally:
            admitted["now"] -= 1

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "workers": pool.size, "idle_workers": pool.idle.qsize(),
                "peak_busy_workers": pool.peak_busy, "admitted": admitted["now"], "capacity": capacity,
                "refused_busy": admitted["refused"]}

    @app.get("/metadata")
    async def metadata(request: Request) -> dict:
        authorize(request)
        return {"model_dir": os.path.basename(os.path.normpath(cfg.model_dir)), "arch": cfg.arch,
                "labels": cfg.label_list, "num_classes": len(cfg.label_list),
                "input_size": cfg.input_size, "use_dynamic_shape": cfg.use_dynamic_shape,
                "preprocess": cfg.preprocess, "default_threshold": default_threshold,
                "max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels, "workers": pool.size,
                "queue": limits.queue, "inputs": pool.first.input_names}

    return app


def main(argv=None) -> None:
    from ..core.errors import ConfigError, DatasetError
    import yaml

    from ..utils.cli import ArgumentParser, model_dir_error, score_threshold

    ap = ArgumentParser(description="HTTP detection server over an exported model dir")
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default; any other "
                                                        "address needs --api_token)")
    ap.add_argument("--port", type=int, default=8866)
    ap.add_argument("--workers", "--pool_size", dest="workers", type=int, default=2,
                    help="predictors serving requests concurrently (threads)")
    ap.add_argument("--queue", type=int, default=8, help="requests that may wait for a predictor; "
                                                          "more get 503 + Retry-After")
    ap.add_argument("--threshold", type=score_threshold, default=0.5, help="default score threshold")
    ap.add_argument("--max_mb", type=float, default=10.0, help="largest accepted upload, MB")
    ap.add_argument("--max_megapixels", type=float, default=40.0,
                    help="largest accepted image, read from its header before decoding")
    ap.add_argument("--read_timeout", type=float, default=10.0, help="seconds to receive a request body")
    ap.add_argument("--api_token", default=os.environ.get("PPDET_API_TOKEN"),
                    help="required from clients (Authorization: Bearer ...); default $PPDET_API_TOKEN")
    ap.add_argument("--device", default="CPU", type=str.upper, choices=["CPU", "GPU"])
    ap.add_argument("--cpu_threads", type=int, default=1, help="math threads per predictor")
    ap.add_argument("--enable_mkldnn", action="store_true")
    ap.add_argument("--samples_dir", default=None, help="images the web page offers as samples")
    args = ap.parse_args(argv)
    for name in ("workers", "port", "cpu_threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1")
    if args.port > 65535:
        ap.error(f"--port {args.port}: must be <= 65535")
    for name in ("queue",):
        if getattr(args, name) < 0:
            ap.error(f"--{name} must be >= 0")
    for name in ("max_mb", "max_megapixels", "read_timeout"):
        if not getattr(args, name) > 0:
            ap.error(f"--{name} must be > 0")
    if args.samples_dir and not os.path.isdir(args.samples_dir):
        ap.error(f"--samples_dir {args.samples_dir}: no such directory")
    if args.host not in LOOPBACK and not args.api_token:
        ap.error(f"--host {args.host} serves beyond this machine: set --api_token (or PPDET_API_TOKEN) so "
                 "that only clients holding it can use the model, or bind 127.0.0.1")
    import uvicorn
    try:
        pool = PredictorPool(args.model_dir, args.workers, device=args.device,
                             cpu_threads=args.cpu_threads, enable_mkldnn=args.enable_mkldnn,
                             threshold=args.threshold)
    except (ConfigError, DatasetError, ValueError, OSError, RuntimeError, yaml.YAMLError) as e:
        print(f"error: {model_dir_error(args.model_dir, e)}", file=sys.stderr)
        sys.exit(2)
    limits = Limits(int(args.max_mb * 2**20), int(args.max_megapixels * 1e6), args.queue, args.read_timeout)
    app = create_app(pool, limits, args.threshold, args.samples_dir, args.api_token)
    print(f"serving {args.model_dir} on http://{args.host}:{args.port} with {args.workers} "
          f"predictors{' (API token required)' if args.api_token else ''}", flush=True)
    # connections past this get uvicorn's 503; the model's own bound (workers + queue) is far below it
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=5,
                limit_concurrency=16 * (args.workers + args.queue) + 256)

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
import argparse
import contextlib
import os
import queue
import threading
import time
from typing import Iterator, Optional

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse

from ..runtime.images import list_images

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


def parse_threshold(value: Optional[str], default: float) -> float:
    if value is None or value == "":
        return default
    try:
        t = float(value)
    except ValueError:
        raise HTTPException(400, f"threshold={value!r} is not a number; use a value in [0, 1]")
    if not 0.0 <= t <= 1.0:
        raise HTTPException(400, f"threshold={t} is outside [0, 1]")
    return t


async def refuse_too_large(request: Request, max_bytes: int, size: int = 0) -> None:
    """413 for a body over ``max_bytes``. The rest of the body is read and dropped first (up to
    64 MB or 4x the limit), so the client gets the answer instead of a reset connection."""
    cap = max(64 << 20, 4 * max_bytes)
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            break
    raise HTTPException(413, f"body exceeds the limit of {max_bytes} bytes (server flag --max_mb)")


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The raw body; 413 past ``max_bytes`` (checked on Content-Length and while reading)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        await refuse_too_large(request, max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            await refuse_too_large(request, max_bytes, size)
        chunks.append(chunk)
    return b"".join(chunks)


PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page", "index.html")


def create_app(pool: PredictorPool, max_bytes: int = 10 << 20, default_threshold: float = 0.5,
               samples_dir: Optional[str] = None) -> FastAPI:
    app = FastAPI(title="ppdet_lite detector", version="1.0")
    cfg = pool.first.cfg
    with open(PAGE, encoding="utf-8") as f:
        page = f.read()
    samples = {os.path.basename(p): p for p in list_images(samples_dir)} if samples_dir else {}

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/samples")
    def sample_names() -> list:
        return sorted(samples)

    @app.get("/samples/{name}")
    def sample(name: str) -> FileResponse:
        if name not in samples:  # only the listed files: no path reaches the disk from the URL
            raise HTTPException(404, f"no sample named {name!r}; GET /samples lists them")
        return FileResponse(samples[name])

    def infer(data: bytes, threshold: float) -> dict:
        with pool.acquire() as det:
            t = time.perf_counter()
            try:
                inputs = det.preprocess([data])
            except ValueError as e:  # cv2 could not decode it
                raise HTTPException(415, f"{e}; send a JPEG, PNG or BMP image")
            found = det.postprocess(det.run(), threshold)[0]
            ms = (time.perf_counter() - t) * 1000
        h, w = (inputs["im_shape"][0] / inputs["scale_factor"][0]).round().astype(int).tolist()
        return {**found.to_json(), "num_boxes": len(found.scores), "image_size": [h, w],
                "threshold": threshold, "inference_ms": round(ms, 3)}

    @app.post("/predict")
    async def predict(request: Request, threshold: Optional[str] = None) -> dict:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes + 65536:  # + room for headers
                await refuse_too_large(request, max_bytes)
            form = await request.form()
            upload = form.get("file") or form.get("image")
            if upload is None or isinstance(upload, str):
                raise HTTPException(400, "multipart body has no file field named 'file' "
                                         "(or 'image')")
            data = await upload.read()
            if len(data) > max_bytes:
                raise HTTPException(413, f"file of {len(data)} bytes exceeds the limit of "
                                         f"{max_bytes} bytes (server flag --max_mb)")
            threshold = threshold or form.get("threshold")
        else:
            data = await read_limited(request, max_bytes)
        if not data:
            raise HTTPException(400, "empty body: POST the image bytes, or multipart/form-data "
                                     "with a 'file' field")
        return await run_in_threadpool(infer, data, parse_threshold(threshold, default_threshold))

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "workers": pool.size, "idle_workers": pool.idle.qsize(),
                "peak_busy_workers": pool.peak_busy}

    @app.get("/metadata")
    def metadata() -> dict:
        return {"model_dir": os.path.basename(os.path.normpath(cfg.model_dir)), "arch": cfg.arch,
                "labels": cfg.label_list, "num_classes": len(cfg.label_list),
                "input_size": cfg.input_size, "use_dynamic_shape": cfg.use_dynamic_shape,
                "preprocess": cfg.preprocess, "default_threshold": default_threshold,
                "max_bytes": max_bytes, "workers": pool.size,
                "inputs": pool.first.input_names}

    return app


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="HTTP detection server over an exported model dir")
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--host", default="127.0.0.1", help="bind address (loopback by default)")
    ap.add_argument("--port", type=int, default=8866)
    ap.add_argument("--workers", "--pool_size", dest="workers", type=int, default=2,
                    help="predictors serving requests concurrently (threads)")
    ap.add_argument("--threshold", type=float, default=0.5, help="default score threshold")
    ap.add_argument("--max_mb", type=float, default=10.0, help="largest accepted image, MB")
    ap.add_argument("--device", default="CPU", type=str.upper, choices=["CPU", "GPU"])
    ap.add_argument("--cpu_threads", type=int, default=1, help="math threads per predictor")
    ap.add_argument("--enable_mkldnn", action="store_true")
    ap.add_argument("--samples_dir", default=None, help="images the web page offers as samples")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be >= 1")
    import uvicorn
    pool = PredictorPool(args.model_dir, args.workers, device=args.device,
                         cpu_threads=args.cpu_threads, enable_mkldnn=args.enable_mkldnn,
                         threshold=args.threshold)
    if args.samples_dir and not os.path.isdir(args.samples_dir):
        ap.error(f"--samples_dir {args.samples_dir}: no such directory")
    app = create_app(pool, int(args.max_mb * 2**20), args.threshold, args.samples_dir)
    print(f"serving {args.model_dir} on http://{args.host}:{args.port} with {args.workers} "
          "predictors", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")

"""The PyTorch side of benchmarks/efficientdet_d0_latency.py: effdet's EfficientDet in a persistent
worker process, run by the effdet side venv's Python (tests/oracles/effdet_env.py; torch, timm and
effdet, no paddle, no ppdet_lite), so that one benchmark alternates its calls with ours.

    <effdet venv>/bin/python benchmarks/effdet_torch_worker.py --model tf_efficientdet_d0 --size 512 --threads 2

Protocol: one JSON object per line on stdin, one reply per line on stdout (anything the libraries
print goes to stderr). The first reply, unasked, is ``{"keys": {name: shape}}`` of the model's
``state_dict``. Then:
- ``{"cmd": "load", "weights": NPZ, "input": NPZ, "outputs": NPZ}``: load the state_dict (every
  key but ``num_batches_tracked``), read ``image`` [1,3,S,S], run once, write ``cls_{i}`` /
  ``box_{i}`` (per level, NCHW) to ``outputs`` -> ``{"ok": true, "torch": ..., "effdet": ...}``;
- ``{"cmd": "run"}``: one timed call -> ``{"ms": ...}``: ``torch.from_numpy(image)``, ``model(x)``
  under ``torch.inference_mode()``, every map ``.numpy()``'d (raw head outputs, no decode, no NMS);
- ``{"cmd": "quit"}``. A failure replies ``{"error": "..."}`` and the worker goes on reading.
"""
import argparse
import json
import os
import sys
import time
import traceback
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tf_efficientdet_d0")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    reply_to = os.fdopen(os.dup(sys.stdout.fileno()), "w")  # the protocol's own stdout
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())       # library prints -> stderr

    def reply(obj) -> None:
        reply_to.write(json.dumps(obj) + "\n")
        reply_to.flush()

    warnings.filterwarnings("ignore")
    import importlib.metadata

    import numpy as np
    import torch
    from effdet import create_model

    torch.set_num_threads(args.threads)
    model = create_model(args.model, pretrained=False, pretrained_backbone=False,
                         image_size=(args.size, args.size)).eval()
    reply({"keys": {k: list(v.shape) for k, v in model.state_dict().items()}})
    image = None
    for line in sys.stdin:
        try:
            msg = json.loads(line)
            if msg["cmd"] == "quit":
                break
            if msg["cmd"] == "load":
                weights = np.load(msg["weights"])
                state = {k: torch.from_numpy(weights[k]) for k in weights.files}
                missing, unexpected = model.load_state_dict(state, strict=False)
                missing = [k for k in missing if not k.endswith("num_batches_tracked")]
                if missing or unexpected:
                    raise KeyError(f"missing {missing[:5]}, unexpected {unexpected[:5]}")
                image = np.ascontiguousarray(np.load(msg["input"])["image"], np.float32)
                with torch.inference_mode():
                    cls_outs, box_outs = model(torch.from_numpy(image))
                np.savez(msg["outputs"], **{f"cls_{i}": t.numpy() for i, t in enumerate(cls_outs)},
                         **{f"box_{i}": t.numpy() for i, t in enumerate(box_outs)})
                reply({"ok": True, "torch": torch.__version__,
                       "effdet": importlib.metadata.version("effdet"),
                       "timm": importlib.metadata.version("timm"), "threads": torch.get_num_threads()})
            elif msg["cmd"] == "run":
                tic = time.perf_counter()
                with torch.inference_mode():
                    cls_outs, box_outs = model(torch.from_numpy(image))
                    [t.numpy() for t in cls_outs + box_outs]
                reply({"ms": (time.perf_counter() - tic) * 1000})
            else:
                raise ValueError(f"unknown cmd {msg['cmd']!r}")
        except Exception as e:  # noqa: BLE001 - reported to the driver, which decides
            reply({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]})


if __name__ == "__main__":
    main()

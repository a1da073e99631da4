"""The bad-input corpus' one check: call a tool's entry function as its script does, and judge what
the user would see.

``call(entry, argv)`` runs ``entry()`` (a ``cli`` / ``main`` that tools/*.py, slim/*.py and deploy/
scripts call) with ``sys.argv`` set, and returns the exit code, stdout (the package log included)
and stderr. An exception escaping ``entry`` is what a user would see as a traceback.

``refused(result, *names)`` asserts the behaviour bad input must get: exit code 2, no traceback,
stderr exactly one line starting with ``error:``, naming each of ``names``. A failure message starts
with a tag in brackets, so a run of the corpus counts the kinds of failure:

    COLUMNS=400 pytest -q -rf tests/hardening | grep -oE '^FAILED.* - AssertionError: \\[[a-z0-9 =-]+\\]' \\
        | grep -oE '\\[[a-z0-9 =-]+\\]' | sort | uniq -c

(tags: traceback, segfault, silent = exit 0 on bad input, exit=N, lines = not exactly one ``error:`` line,
unnamed = the line misses the file/key/value, lost = a file written before changed or vanished).
``HARDENING_LOG=/tmp/msgs.txt`` appends every refusal's stderr there, to read the messages at once.
"""
import hashlib
import io
import logging
import os
import sys
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(ROOT, "configs", "ppyolo_tiny_shapes.yml")


@dataclass
class Result:
    code: object  # int exit code, or "exception" when one escaped the entry function
    out: str
    err: str


def call(entry, argv, prog: str = "tool") -> Result:
    """``entry()`` with ``sys.argv = [prog, *argv]``; SystemExit read as the interpreter would."""
    out, err, log = io.StringIO(), io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(log)
    logger = logging.getLogger("ppdet_lite")
    logger.addHandler(handler)
    saved = sys.argv
    sys.argv = [prog, *[str(a) for a in argv]]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                entry()
                code = 0
            except SystemExit as e:
                code = e.code
                if code is None:
                    code = 0
                elif not isinstance(code, int):  # the interpreter prints the message, exit 1
                    print(code, file=sys.stderr)
                    code = 1
            except BaseException:  # noqa: BLE001  (what the user would see as a traceback)
                traceback.print_exc()
                code = "exception"
    finally:
        sys.argv = saved
        logger.removeHandler(handler)
    return Result(code, out.getvalue() + log.getvalue(), err.getvalue())


def problems(res: Result, names=(), strict_stderr: bool = True):
    """The tags of what is wrong with ``res`` as a refusal of bad input (empty when it is right)."""
    tags = []
    if res.code == "exception" or "Traceback" in res.err:
        tags.append("traceback")
    elif isinstance(res.code, int) and res.code < 0:
        tags.append("segfault")
    elif res.code == 0:
        tags.append("silent")
    elif res.code != 2:
        tags.append(f"exit={res.code}")
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if "traceback" not in tags and res.code != 0:
        if len(errors) != 1 or (strict_stderr and len(lines) != 1):
            tags.append("lines")
        elif any(str(n) not in errors[0] for n in names):
            tags.append("unnamed")
    return tags


def refused(res: Result, *names, strict_stderr: bool = True) -> str:
    """Assert ``res`` is a refusal (exit 2, one ``error:`` line naming ``names``); returns that line."""
    tags = problems(res, names, strict_stderr)
    if os.environ.get("HARDENING_LOG"):  # collect the messages, to read them all at once
        with open(os.environ["HARDENING_LOG"], "a") as f:
            f.write(res.err.strip().replace("\n", " | ") + "\n")
    assert not tags, (f"[{' '.join(tags)}] exit={res.code} want names {list(names)}\n"
                      f"--- stderr:\n{res.err[-3000:]}\n--- stdout:\n{res.out[-1500:]}")
    return next(ln for ln in res.err.splitlines() if ln.startswith("error:"))


def fingerprint(path: str) -> dict:
    """{relative file path: sha256} of every file under ``path`` (a run must not lose any)."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
    return out


def kept(before: dict, after: dict) -> None:
    """Assert every file of ``before`` is still there with the same content."""
    lost = sorted(k for k in before if after.get(k) != before[k])
    assert not lost, f"[lost] files written before were lost or changed: {lost}"


def entry(tool: str):
    """The function the tool's script calls (tools/X.py, slim/X.py, deploy/python/infer.py,
    deploy/serving/server.py)."""
    import importlib

    module, name = {
        "train": ("ppdet_lite.tools.train", "cli"), "eval": ("ppdet_lite.tools.eval", "cli"),
        "infer": ("ppdet_lite.tools.infer", "cli"), "export": ("ppdet_lite.tools.export_model", "cli"),
        "anchor_cluster": ("ppdet_lite.tools.anchor_cluster", "cli"),
        "quant": ("ppdet_lite.slim.tools.quant", "cli"), "post_quant": ("ppdet_lite.slim.tools.post_quant", "cli"),
        "prune_distill": ("ppdet_lite.slim.tools.prune_distill", "cli"),
        "deploy_infer": ("ppdet_lite.deploy.infer", "cli"), "server": ("ppdet_lite.deploy.serving", "main"),
    }[tool]
    return getattr(importlib.import_module(module), name)


def base_args(tool: str, ws, tmp, config=None):
    """A working command line of ``tool`` on the tiny workspace (``config`` instead of its -c)."""
    c = ["-c", config or ws.cfg]
    out = str(tmp / "out")
    return {
        "train": c,
        "eval": c + ["--output_eval", out],
        "infer": c + ["--infer_img", ws.image, "--output_dir", out],
        "export": c + ["--output_dir", out],
        "anchor_cluster": c + ["-n", "9", "-s", "64", "-i", "5", "--output", str(tmp / "anchors.yml")],
        "quant": c + ["--slim_config", ws.slim_qat, "--output_dir", out, "--no_eval"],
        "post_quant": c + ["--slim_config", ws.slim_ptq, "--output_dir", out, "--no_eval"],
        "prune_distill": c + ["--slim_config", ws.slim_distill, "--output_dir", out, "--target", "0"],
    }[tool]


def run_tool(tool: str, argv) -> Result:
    """``tool``'s entry on ``argv``. The server's start-up is judged up to the point where it would
    listen: ``uvicorn.run`` returns at once, so a server that would start exits 0 here."""
    if tool != "server":
        return call(entry(tool), argv, prog=tool)
    import uvicorn

    real = uvicorn.run
    uvicorn.run = lambda *a, **k: None
    try:
        return call(entry(tool), argv, prog=tool)
    finally:
        uvicorn.run = real

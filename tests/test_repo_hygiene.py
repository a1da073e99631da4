"""The house rules a reviewer would otherwise check by hand: no generated files in git, no
module-search-path glue, no import circle inside the package, no import of the package facade from inside
it, and every module says what it is for in its first lines."""
import ast
import os
import re
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "ppdet_lite")
# Weights, programs, Lite models and profiler traces are outputs; only this folder may hold small ones.
FIXTURES = "tests/fixtures/"
FIXTURE_MAX_BYTES = 1 << 20
OUTPUT_FILE = re.compile(r"\.(pdparams|pdopt|pdema|pdiparams|pdmodel|nb|onnx|weights|pth|pt)$|trace\.json$")


def tracked_outputs(files, size_of=lambda path: 0):
    """The paths among ``files`` that are generated outputs outside the fixture folder (or too big in it)."""
    return [f for f in files if OUTPUT_FILE.search(f) and
            (not f.startswith(FIXTURES) or size_of(f) > FIXTURE_MAX_BYTES)]


def git_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing is tracked")
    return out.split()


def test_no_generated_file_is_tracked():
    files = git_files()
    assert tracked_outputs(files, lambda f: os.path.getsize(os.path.join(ROOT, f))) == []
    big = [f for f in files if os.path.isfile(os.path.join(ROOT, f)) and
           os.path.getsize(os.path.join(ROOT, f)) > 2_000_000]
    assert big == [], f"tracked files over 2 MB: {big}"


def test_the_guard_catches_outputs():
    files = ["README.md", "output/x/model_final.pdparams", "out_sgd96/s96/4.pdopt", "a/b.pdema",
             "m/model.pdiparams", "lite/model.nb", "profiler_log/host.paddle_trace.json",
             "tests/fixtures/darknet/tiny.weights", "tests/fixtures/big.pdparams"]
    sizes = {"tests/fixtures/big.pdparams": 5 << 20}
    assert tracked_outputs(files, lambda f: sizes.get(f, 10)) == files[1:7] + ["tests/fixtures/big.pdparams"]


def python_files():
    skip = {".venv", ".git", "output", "output_inference", "dataset", "build", "__pycache__"}
    for top, dirs, names in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith((".venv", "out_"))]
        yield from (os.path.join(top, n) for n in names if n.endswith(".py"))


def test_no_import_path_manipulation():
    offenders = []
    for path in python_files():
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if re.search(r"sys\.path\.(insert|append|extend)|sys\.path\s*(\+?=)", line):
                    offenders.append(f"{os.path.relpath(path, ROOT)}:{i}")
    assert offenders == []


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def imports_of(path):
    """Modules of ppdet_lite that ``path`` imports anywhere (module level or inside functions)."""
    name = module_name(path)
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ppdet_lite"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "ppdet_lite":
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return found


def package_graph():
    modules = {module_name(p): p for p in python_files() if p.startswith(PACKAGE + os.sep)}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path) if m in modules and m != name}
    return graph


def test_nothing_inside_the_package_imports_the_facade():
    users = sorted(name for name, deps in package_graph().items() if "ppdet_lite" in deps and name != "ppdet_lite")
    assert users == [], f"modules importing the package facade ppdet_lite/__init__.py: {users}"


def find_cycle(graph):
    """One import cycle of ``graph`` (a list of modules) or None; packages import their own modules."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if node.startswith(dep + "."):  # a module importing its own package's __init__ is not a circle
                continue
            if state.get(dep) == "open":
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_circle():
    cycle = find_cycle(package_graph())
    assert cycle is None, f"import circle: {' -> '.join(cycle)}"


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}}) == ["a.x", "a.y", "a.z", "a.x"]
    assert find_cycle({"a.x": {"a"}, "a": {"a.x"}}) is None


def test_every_module_says_what_it_is_for():
    missing = []
    for path in python_files():
        if not path.startswith((PACKAGE, os.path.join(ROOT, "tools"), os.path.join(ROOT, "deploy"),
                                os.path.join(ROOT, "slim"), os.path.join(ROOT, "benchmarks"))):
            continue
        with open(path, encoding="utf-8") as f:
            text = f.read()
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            missing.append(os.path.relpath(path, ROOT))
    assert missing == [], f"modules without a docstring saying what they are for: {missing}"

"""The README's two commands are the ones users and CI run."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.findall(r"```bash\n(python3 -m venv [^\n]+)\n```", text)


def test_ci_runs_the_readme_test_command():
    demo, test = readme_commands()[:2]
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert test in ci.splitlines(), "README test command and .ci/run differ"
    assert "pytest" in test and "tools/train.py -c configs/ppyolo_tiny_shapes.yml --eval" in demo


def test_readme_configs_exist():
    text = open(os.path.join(ROOT, "README.md")).read()
    for path in set(re.findall(r"`(configs/[\w/]+\.yml)`", text)):
        assert os.path.isfile(os.path.join(ROOT, path)), path

"""The command-line flags shared by tools/*.py: ``-c CONFIG``, ``-o key=value ...`` and, where a
tool takes it, ``--slim_config SLIM``."""
import argparse
import math
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error: ...`` line with exit code 2, as ``run`` prints
    bad input (argparse's own prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


class ArgsParser(ArgumentParser):
    def __init__(self, slim: bool = False, slim_required: bool = False, config_required: bool = True,
                 **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)
        self.add_argument("-c", "--config", required=config_required,
                          help="config YAML, e.g. configs/ppyolo_tiny.yml")
        self.add_argument("-o", "--opt", nargs="*", default=[],
                          help="override config keys, e.g. -o TrainReader.batch_size=8 weights=output/x/model_final")
        if slim or slim_required:
            self.add_argument("--slim_config", default=None, required=slim_required,
                              help="a slim config (configs/slim/): prune, quantize or distil -c's model")


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; give one >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def multiple_of(stride: int, why: str, examples: str):
    """An argparse type: a positive multiple of ``stride`` (an input side); the error names
    ``why`` the stride (e.g. "YOLOv4-tiny's stride") and ``examples``."""
    def check(text: str) -> int:
        value = positive_int(text)
        if value % stride:
            raise argparse.ArgumentTypeError(f"{value} is not a multiple of {stride} ({why}); "
                                             f"give e.g. {examples}")
        return value
    return check


def _number_in(text: str, lo: float, hi: float, hi_closed: bool, lo_closed: bool = True,
               what: str = "a number") -> float:
    """``text`` as a float in the interval (closed or open at each end), else an argparse error."""
    span = f"{'[' if lo_closed else '('}{lo:g}, {hi:g}{']' if hi_closed else ')'}"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give {what} in {span}") from None
    inside = (lo <= value if lo_closed else lo < value) and (value <= hi if hi_closed else value < hi)
    if math.isnan(value) or not inside:
        raise argparse.ArgumentTypeError(f"{text} is outside {span}; give {what} in {span}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    return _number_in(text, 0.0, 1.0, hi_closed=False)


def ratio(text: str) -> float:
    """An argparse type: a number in (0, 1) (a pruning ratio)."""
    return _number_in(text, 0.0, 1.0, hi_closed=False, lo_closed=False, what="a ratio")


def score_threshold(text: str) -> float:
    """An argparse type: a number in [0, 1] (NaN and out-of-range values are usage errors)."""
    return _number_in(text, 0.0, 1.0, hi_closed=True, what="a score threshold")


def model_dir_error(model_dir: str, e: Exception):
    """The ``ConfigError`` for an exported model dir that does not load (``e``: what loading raised)."""
    import os

    import yaml

    from ..core.config import yaml_problem
    from ..core.errors import ConfigError

    cfg = os.path.join(model_dir, "infer_cfg.yml")
    if isinstance(e, UnicodeDecodeError):
        return ConfigError(f"--model_dir {model_dir}: {cfg} is not UTF-8 text (byte {e.start}); export the model "
                           "again with tools/export_model.py")
    if isinstance(e, yaml.YAMLError):
        return ConfigError(f"--model_dir {model_dir}: {cfg}: invalid YAML: {yaml_problem(e)}; export the model "
                           "again with tools/export_model.py")
    if isinstance(e, RuntimeError):  # Paddle Inference refused the files (its message spans lines)
        return ConfigError(f"--model_dir {model_dir}: Paddle Inference cannot load this model "
                           f"({' '.join(str(e).split())[:300]}); export the model again")
    return ConfigError(f"--model_dir {model_dir}: {' '.join(str(e).split())}")


def load_configs(args):
    """``(cfg, slim_cfg)`` from ``-c``, ``-o`` and ``--slim_config`` (``slim_cfg`` None without it)."""
    from ..core.config import load_config
    from ..slim import load_slim_config

    if getattr(args, "slim_config", None):
        return load_slim_config(args.config, args.slim_config, args.opt)
    return load_config(args.config, args.opt), None


def run(main) -> None:
    """Run a tool's ``main``; configuration and data errors print one clear message, exit code 2."""
    from ..core.errors import ConfigError, DatasetError

    try:
        main()
    except (ConfigError, DatasetError, FloatingPointError) as e:  # FloatingPointError: the NaN guard's stop
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a file or directory the tool cannot read or write (missing, full disk, ...)
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or one_line(e)}; check the path, its permissions and the free space "
              "there", file=sys.stderr)
        sys.exit(2)


def one_line(e: Exception) -> str:
    """An error's message on one line (a message may add context on lines of its own)."""
    return " ".join(part.strip() for part in str(e).splitlines() if part.strip())

"""The command-line flags shared by tools/*.py: ``-c CONFIG`` and ``-o key=value ...``."""
import argparse
import sys


class ArgsParser(argparse.ArgumentParser):
    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(**kwargs)
        self.add_argument("-c", "--config", required=True, help="config YAML, e.g. configs/ppyolo_tiny.yml")
        self.add_argument("-o", "--opt", nargs="*", default=[],
                          help="override config keys, e.g. -o TrainReader.batch_size=8 weights=output/x/model_final")


def run(main) -> None:
    """Run a tool's ``main``; configuration and data errors print one clear message, exit code 2."""
    from ..core.errors import ConfigError, DatasetError

    try:
        main()
    except (ConfigError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)

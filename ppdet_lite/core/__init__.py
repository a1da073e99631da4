"""Config loading and the component registry."""
from .config import Config, load_config
from .errors import ConfigError, DatasetError
from .registry import create, register

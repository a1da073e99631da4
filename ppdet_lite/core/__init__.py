"""Config loading, the component registry, and the PaddleDetection settings ppdet_lite refuses."""
from .config import Config, load_config
from .errors import ConfigError, DatasetError
from .registry import create, register
from .unimplemented import NotImplementedSetting

"""The two error types users see: bad configuration and bad data."""


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it and says how to fix it."""


class DatasetError(ValueError):
    """A dataset file, image or annotation is wrong; the message names it and says how to fix it."""

"""Registry: maps a class name used in YAML to its constructor.

Components register with ``@register``.  ``create`` builds one from a dict of YAML keys and checks
every key against the constructor's signature, so a misspelt key fails with the closest valid names.
A PaddleDetection argument a component does not implement is declared in its ``NOT_IMPLEMENTED``
class attribute (see ``core/unimplemented.py``): accepted at its no-op value and then dropped, a
ConfigError at any other value.
The registry never rewires arguments: whatever a component needs from elsewhere (channels from the
backbone, ``num_classes``) its builder passes explicitly.
"""
import difflib
import inspect
from typing import Any, Dict, Optional

from .errors import ConfigError
from .unimplemented import check_not_implemented
from .values import check_arguments

_REGISTRY: Dict[str, type] = {}


def register(cls):
    """Class decorator: make ``cls`` buildable from YAML under its class name."""
    name = cls.__name__
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"two classes registered under the name {name!r}")
    both = set(getattr(cls, "NOT_IMPLEMENTED", {})) & (accepted_keys(cls) or set())
    if both:  # a declared no-op argument must not also reach the constructor
        raise ValueError(f"{name}: {sorted(both)} are both constructor arguments and NOT_IMPLEMENTED; "
                         "drop them from the constructor")
    _REGISTRY[name] = cls
    return cls


def registered() -> Dict[str, type]:
    return dict(_REGISTRY)


def closest(word: str, choices, n: int = 3):
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)


def lookup(name: str, where: str = "") -> type:
    """The class registered as ``name``; a ``ConfigError`` naming close matches otherwise."""
    if name not in _REGISTRY:
        hint = closest(name, _REGISTRY)
        raise ConfigError(f"unknown component {name!r}{' (' + where + ')' if where else ''}; "
                          f"closest registered names: {hint or sorted(_REGISTRY)[:10]}")
    return _REGISTRY[name]


def accepted_keys(cls) -> Optional[set]:
    """Keyword names ``cls`` accepts, or None when it takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.name != "self"}


def create(name: str, kwargs: Optional[Dict[str, Any]] = None, where: str = "", **explicit):
    """Build the component ``name`` from YAML ``kwargs`` plus ``explicit`` arguments.

    ``where`` names the file/section the kwargs came from, for error messages. Explicit arguments
    win over YAML ones (they carry values a builder derives, like ``in_channels``).
    """
    cls = lookup(name, where)
    kwargs = {k: v for k, v in (kwargs or {}).items() if k != "name"}
    not_implemented = getattr(cls, "NOT_IMPLEMENTED", {})
    check_not_implemented(kwargs, not_implemented, f"{where or name}: {name}")
    kwargs = {k: v for k, v in kwargs.items() if k not in not_implemented}
    keys = accepted_keys(cls)
    if keys is not None:
        for key in kwargs:
            if key not in keys:
                raise ConfigError(f"{where or name}: {name} has no argument {key!r}; "
                                  f"closest valid keys: {closest(key, keys) or sorted(keys)}")
    check_arguments(cls, kwargs, where or name)
    kwargs.update(explicit)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where or name}: cannot build {name}: {e}") from e

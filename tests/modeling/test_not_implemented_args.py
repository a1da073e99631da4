"""Every component's ``NOT_IMPLEMENTED`` PaddleDetection arguments (``core/unimplemented.py``):
each loads from YAML at its no-op values, is refused naming component and key at any other
value, and is no constructor argument (a Python caller passing it gets a TypeError)."""
import inspect

import pytest

import ppdet_lite.data  # noqa: F401  (registers the datasets and transforms)
import ppdet_lite.engine  # noqa: F401  (registers the LR schedules)
import ppdet_lite.modeling  # noqa: F401  (registers the model components)
from ppdet_lite.core.errors import ConfigError
from ppdet_lite.core.registry import accepted_keys, create, registered


def _declared():
    return sorted((name, key) for name, cls in registered().items() if not name.startswith("_")
                  for key in getattr(cls, "NOT_IMPLEMENTED", {}))


def _switched_on(accepted):
    """A value none of ``accepted`` is: the other bool for a bool setting, else a marker."""
    if any(isinstance(v, bool) for v in accepted):
        return not next(v for v in accepted if isinstance(v, bool))
    return "switched-on"


def _required(cls):
    """Values for constructor arguments without a default, so ``create`` gets that far."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: 1 for p in params if p.name != "self" and p.default is p.empty
            and p.kind is p.POSITIONAL_OR_KEYWORD}


def test_components_declare_not_implemented_arguments():
    assert ("ImageFolder", "data_fields") in _declared()


@pytest.mark.parametrize("name,key", _declared())
def test_not_implemented_argument(name, key):
    cls = registered()[name]
    setting = cls.NOT_IMPLEMENTED[key]
    assert key not in (accepted_keys(cls) or ())
    for value in setting.accepted:
        create(name, {**_required(cls), key: value}, where=f"m.yml: {name}")
    on = _switched_on(setting.accepted)
    with pytest.raises(ConfigError) as e:
        create(name, {**_required(cls), key: on}, where=f"m.yml: {name}")
    assert str(e.value).startswith(f"m.yml: {name}: {name}: {key}: {on!r}: ppdet_lite does not implement {key}")
    with pytest.raises(TypeError):
        cls(**_required(cls), **{key: setting.accepted[0]})

"""Loading a data table from ``configs/`` (YAML validated by a pydantic model)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import DataMissingError, ProfileInvalidError, ProfileSyntaxError

T = TypeVar("T", bound=BaseModel)
# libyaml's parser where PyYAML was built with it (the wheels are): the same safe
# subset, several times faster than the pure-Python one on every start.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> object:
    """Safe YAML, parsed by libyaml when present."""
    return yaml.load(text, Loader=_LOADER)


def load_yaml_table(path: Path, model: type[T], what: str) -> T:
    """Read and validate one table; typed errors name the file and the field."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DataMissingError(str(path), what) from err
    except UnicodeDecodeError as err:
        raise ProfileSyntaxError(str(path), f"not UTF-8 text (byte {err.start})") from err
    except OSError as err:
        raise ProfileSyntaxError(str(path), f"cannot read: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ProfileSyntaxError(str(path), f"invalid YAML: {err}") from err
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ProfileInvalidError(str(path), field, first["msg"], f"fix this field of the {what}") from err

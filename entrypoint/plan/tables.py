"""Loading a data table from ``configs/`` (YAML validated by a pydantic model)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import DataMissingError, ProfileInvalidError, ProfileSyntaxError

T = TypeVar("T", bound=BaseModel)


def load_yaml_table(path: Path, model: type[T], what: str) -> T:
    """Read and validate one table; typed errors name the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
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

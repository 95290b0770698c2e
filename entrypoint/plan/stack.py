"""A set of models served together (``MODELS``): the stack file's schema and the entries.

``MODELS`` is a comma-separated list of profile names, ``profile:variant`` or Hub
repo ids (a profile derived from the checkpoint), or the name of a stack file in a
stacks directory (``configs/stacks/NAME.yaml``) or a path to one. A stack file names
the models and, for each, optionally its share of the KV budget (``kv_share``), the
sequences it must hold at once at its ``max_model_len`` (``min_seqs``) and engine
settings by option name. Pure: the file's text comes in as a value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import StackInvalidError

MAX_MODELS = 8  # engines on one device; each holds its own runtime allowance
_SLUG = re.compile(r"[^a-z0-9]+")


class StackModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Field(min_length=1)]  # profile, profile:variant, repo id or path
    kv_share: Annotated[float, Field(gt=0, le=1)] | None = None
    min_seqs: Annotated[int, Field(ge=1, le=4096)] | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


class StackFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    models: Annotated[list[StackModel], Field(min_length=1, max_length=MAX_MODELS)]

    @model_validator(mode="after")
    def _shares(self) -> StackFile:
        total = sum(m.kv_share or 0 for m in self.models)
        if total > 1 + 1e-9:
            raise ValueError(f"the kv_share values add up to {total:g}, more than 1")
        return self


@dataclass(frozen=True)
class Entry:
    """One model of the set: what names it (``model``, ``variant``), its share of the
    KV budget and floor of sequences, its own settings, and its slug (state folder)."""

    model: str
    variant: str | None
    slug: str
    kv_share: float | None = None
    min_seqs: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)


def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:64] or "model"


def _entry(raw: str, profiles: set[str], where: str, **extra: Any) -> Entry:
    name, colon, variant = raw.strip().partition(":")
    if colon and name not in profiles:
        raise StackInvalidError(
            where, f"'{raw}' names a variant of '{name}', which is no profile", "write PROFILE:VARIANT"
        )
    return Entry(name, variant or None, slug(raw), **extra)


def _unique(entries: list[Entry], where: str) -> tuple[Entry, ...]:
    seen: set[str] = set()
    for entry in entries:
        if entry.slug in seen:
            raise StackInvalidError(
                where, f"'{entry.model}' is named twice", "name each model once (one engine serves it)"
            )
        seen.add(entry.slug)
    return tuple(entries)


def from_list(value: str, profiles: set[str], where: str = "MODELS") -> tuple[Entry, ...]:
    """``MODELS=a,b:variant,owner/repo``."""
    words = [w.strip() for w in value.split(",")]
    if any(not w for w in words):
        raise StackInvalidError(
            where, f"'{value}' has an empty name", "separate model names by single commas"
        )
    if len(words) > MAX_MODELS:
        raise StackInvalidError(where, f"{len(words)} models", f"serve at most {MAX_MODELS} on one device")
    return _unique([_entry(w, profiles, where) for w in words], where)


def from_file(data: Any, profiles: set[str], where: str) -> tuple[Entry, ...]:
    """A stack file's parsed YAML."""
    try:
        stack = StackFile.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        at = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise StackInvalidError(
            f"{where}: {at}",
            first["msg"].removeprefix("Value error, "),
            "see configs/stacks/README.md for the fields",
        ) from None
    entries = [
        _entry(m.model, profiles, f"{where}: models[{i}]", kv_share=m.kv_share, min_seqs=m.min_seqs,
               settings=dict(m.settings))
        for i, m in enumerate(stack.models)
    ]  # fmt: skip
    return _unique(entries, where)

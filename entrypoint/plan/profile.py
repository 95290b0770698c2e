"""Launch profiles: the pydantic v2 schema and the catalog that loads them.

A profile is one YAML file in a profiles directory; its file name (without
``.yaml``) is its name. Nothing is read at import time.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import ProfileInvalidError, ProfileSyntaxError, UnknownProfileError, UnknownVariantError
from .tables import load_yaml

QuantFormat = Literal[
    "modelopt-nvfp4",  # ModelOpt NVFP4, W4A4
    "modelopt-w4a16-nvfp4",  # ModelOpt W4A16_NVFP4, weight-only
    "ct-nvfp4",  # compressed-tensors nvfp4-pack-quantized, W4A4
    "ct-nvfp4a16",  # compressed-tensors nvfp4-pack-quantized, weight-only
    "none",  # unquantized
    "other",  # another format vLLM detects itself (FP8, AWQ, GPTQ, ...): not NVFP4
]
KvCacheDtype = Literal["auto", "bfloat16", "float16", "fp8", "fp8_e4m3", "fp8_e5m2"]
Dtype = Literal["auto", "bfloat16", "float16", "half", "float", "float32"]
# A Hub repo id: owner and name of at most 96 ASCII word characters, dots or dashes
# each (the Hub's own limit). ASCII, as the Hub's names are: a Unicode class with
# bounded repeats costs pydantic's regex engine ~60 ms to build on every start.
REPO_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,96}/[A-Za-z0-9_.-]{1,96}$"
# Ranges far beyond any real model, so a typo (an extra digit, 1e20) is refused by name.
Tokens = Annotated[int, Field(gt=0, le=2**24)]  # 16,777,216 tokens


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SpeculativeConfig(_Strict):
    """vLLM's ``--speculative-config``; only the fields profiles need."""

    method: Literal["mtp", "eagle", "eagle3", "ngram", "draft_model"]
    num_speculative_tokens: Annotated[int, Field(gt=0, le=64)]
    model: str | None = None


class VllmOptions(_Strict):
    """Typed vLLM engine options. ``None`` means "leave vLLM's default"."""

    dtype: Dtype | None = None
    max_model_len: Tokens | None = None
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] | None = None
    max_num_seqs: Annotated[int, Field(gt=0, le=65536)] | None = None
    max_num_batched_tokens: Tokens | None = None
    long_prefill_token_threshold: Tokens | None = None
    kv_cache_dtype: KvCacheDtype | None = None
    enable_prefix_caching: bool | None = None
    trust_remote_code: bool | None = None
    language_model_only: bool | None = None
    enable_auto_tool_choice: bool | None = None
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    speculative_config: SpeculativeConfig | None = None
    enforce_eager: bool | None = None
    moe_backend: str | None = None
    linear_backend: str | None = None
    shutdown_timeout: Annotated[int, Field(ge=0, le=3600)] | None = None
    kv_cache_memory_bytes: Annotated[int, Field(ge=2**20, le=2**50)] | None = None  # 1 MiB to 1 PiB
    extra_args: list[str] = Field(default_factory=list)


class Hardware(_Strict):
    min_memory_gb: Annotated[float, Field(gt=0)]
    min_compute_capability: Annotated[float, Field(ge=7.0)] = 10.0


class Download(_Strict):
    """Which repo files to fetch. ``allow_patterns`` replaces the defaults;
    ``ignore_patterns`` is added to the default ignores."""

    allow_patterns: list[str] | None = None
    ignore_patterns: list[str] = Field(default_factory=list)


class Cluster(_Strict):
    """How the engine spans several Sparks (CLUSTER_NODES > 1)."""

    parallel: Literal["tensor", "pipeline"] | None = None


class Variant(_Strict):
    description: str = ""
    vllm: VllmOptions = Field(default_factory=VllmOptions)
    env: dict[str, str] = Field(default_factory=dict)


class Profile(_Strict):
    description: str = ""
    repo: Annotated[str, Field(pattern=REPO_ID_PATTERN)]
    revision: str = "main"
    served_model_name: Annotated[str, Field(min_length=1)]
    quantization: QuantFormat
    hardware: Hardware
    vllm: VllmOptions = Field(default_factory=VllmOptions)
    env: dict[str, str] = Field(default_factory=dict)
    download: Download = Field(default_factory=Download)
    cluster: Cluster = Field(default_factory=Cluster)
    default_variant: str | None = None
    variants: dict[str, Variant] = Field(default_factory=dict)
    hardware_overrides: dict[str, Variant] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_variant_exists(self) -> Profile:
        if self.default_variant is not None and self.default_variant not in self.variants:
            raise ValueError(
                f"default_variant '{self.default_variant}' is not one of the variants "
                f"({', '.join(self.variants) or 'none'})"
            )
        return self


@dataclass(frozen=True)
class LoadedProfile:
    name: str
    path: Path
    profile: Profile
    derived_from: str | None = None  # set when derived from a checkpoint, not read from a file
    reasons: Mapping[str, str] = field(default_factory=dict)  # field path → why (derived only)
    notes: tuple[str, ...] = ()  # what derivation did not derive, and why (derived only)


def suggest(name: str, known: list[str]) -> str | None:
    matches = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return matches[0] if matches else None


def _field_fix(err: dict[str, Any], model: type[BaseModel]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "remove it or fix its spelling (see configs/profiles/README.md for the fields)"
    if kind == "missing":
        return "add this field"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"use one of {expected}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        return f"use a value that is {err['msg'].removeprefix('Input should be ')}"
    return f"use a valid value ({err['msg']})"


def _first_error(exc: ValidationError) -> tuple[str, str, str]:
    err = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in err["loc"]) or "<top level>"
    detail = err["msg"]
    if err["type"] != "missing" and "input" in err and not isinstance(err["input"], dict):
        detail = f"{detail} (got {err['input']!r})"
    return field, detail, _field_fix(dict(err), Profile)


def parse_profile(path: Path) -> Profile:
    """Read and validate one profile file; raise a typed error naming path and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProfileSyntaxError(str(path), f"cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ProfileSyntaxError(str(path), f"not UTF-8 text (byte {err.start})") from err
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ProfileSyntaxError(str(path), f"{where}{problem}") from err
    if not isinstance(data, dict):
        raise ProfileSyntaxError(str(path), "top level must be a mapping of fields")
    try:
        return Profile.model_validate(data)
    except ValidationError as err:
        field, detail, fix = _first_error(err)
        raise ProfileInvalidError(str(path), field, detail, fix) from err


class Catalog:
    """The profiles found in one or more directories (later ones override)."""

    def __init__(self, dirs: list[Path]) -> None:
        self.dirs = dirs
        self._files: dict[str, Path] = {}
        for directory in dirs:
            if directory.is_dir():
                for path in sorted(directory.glob("*.yaml")):
                    self._files[path.stem] = path
        self._cache: dict[str, LoadedProfile] = {}

    @classmethod
    def from_path_list(cls, value: str) -> Catalog:
        return cls([Path(p) for p in value.split(os.pathsep) if p])

    def names(self) -> list[str]:
        return sorted(self._files)

    def get(self, name: str, *, where: str = "PROFILE") -> LoadedProfile:
        if name not in self._files:
            known = self.names()
            raise UnknownProfileError("profile", name, known, where=where, suggestion=suggest(name, known))
        if name not in self._cache:
            path = self._files[name]
            self._cache[name] = LoadedProfile(name, path, parse_profile(path))
        return self._cache[name]

    def find_by_repo(self, repo: str) -> LoadedProfile | None:
        for name in self.names():
            loaded = self.get(name)
            if loaded.profile.repo.lower() == repo.lower():
                return loaded
        return None

    def all(self) -> list[LoadedProfile]:
        return [self.get(name) for name in self.names()]


def check_variant(loaded: LoadedProfile, variant: str, *, where: str) -> Variant:
    variants = loaded.profile.variants
    if variant not in variants:
        known = sorted(variants)
        raise UnknownVariantError(
            loaded.name, variant, known, where=where, suggestion=suggest(variant, known)
        )
    return variants[variant]

"""The families table (``configs/families.yaml``): architecture family → vLLM
parsers, and the defaults derivation uses. Nothing is read at import time."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ..shipped import configs
from .tables import load_yaml_table


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Family(_Strict):
    model_types: Annotated[list[str], Field(min_length=1)]
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    # special tokens the parser needs in the tokenizer (vLLM refuses to start without them)
    reasoning_tokens: list[str] = Field(default_factory=list)
    tool_call_tokens: list[str] = Field(default_factory=list)


class DeriveDefaults(_Strict):
    mtp_num_speculative_tokens: Annotated[int, Field(gt=0)]
    sequences_at_full_context: Annotated[int, Field(gt=0)]
    context_step: Annotated[int, Field(gt=0)]
    shutdown_timeout: Annotated[int, Field(ge=0)]
    think_tag_reasoning_parser: str | None = None
    think_tag_tokens: list[str] = Field(default_factory=list)


class FamilyTable(_Strict):
    defaults: DeriveDefaults
    families: dict[str, Family]

    def family_of(self, config: Mapping[str, Any]) -> tuple[str, Family] | None:
        """The first family listing the checkpoint's model_type (or its text_config's)."""
        text = config.get("text_config")
        types = [config.get("model_type"), text.get("model_type") if isinstance(text, dict) else None]
        for model_type in (t for t in types if isinstance(t, str)):
            for key, family in self.families.items():
                if model_type in family.model_types:
                    return key, family
        return None

    def parser_names(self) -> list[tuple[str, str, str]]:
        """(where, kind, name) for every parser the table names."""
        names: list[tuple[str, str, str]] = []
        for key, family in self.families.items():
            if family.reasoning_parser:
                names.append((f"families.{key}.reasoning_parser", "reasoning", family.reasoning_parser))
            if family.tool_call_parser:
                names.append((f"families.{key}.tool_call_parser", "tool", family.tool_call_parser))
        if self.defaults.think_tag_reasoning_parser:
            names.append(
                ("defaults.think_tag_reasoning_parser", "reasoning", self.defaults.think_tag_reasoning_parser)
            )
        return names


def default_families_file() -> Path:
    return configs("families.yaml")


def load_families(path: Path | None = None) -> FamilyTable:
    return load_yaml_table(path or default_families_file(), FamilyTable, "families table")

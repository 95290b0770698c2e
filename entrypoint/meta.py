"""Data shared by the planner and what feeds it: a checkpoint's metadata and a
download request. Plain values; the planner reads them, ``inputs/`` and ``hub/``
make them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightSizes:
    """Bytes on disk of each part of the checkpoint's weights."""

    total: int
    vision: int = 0
    mtp: int = 0
    experts: int = 0  # routed experts of the language model (MoE)
    source: str = ""  # where the figures came from
    named: bool = False  # tensor names were read (vision / MTP / experts split is known)
    embedding: int = 0  # the language model's input embedding table (decode reads a few rows of it)
    skipped: int = 0  # stored but not loaded by vLLM: an lm_head tied to the embedding

    @property
    def language_model(self) -> int:
        return self.total - self.vision - self.mtp


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's JSON and weight sizes, never a weight byte."""

    config: dict[str, Any]
    hf_quant: dict[str, Any] | None
    weights: WeightSizes
    origin: str
    files: tuple[str, ...] = ()  # the repo's (or directory's) file names
    commit: str | None = None  # the Hub commit the metadata is from
    chat_template: str | None = None  # tokenizer_config.json's or chat_template.jinja's
    special_tokens: tuple[str, ...] | None = None  # tokenizer_config.json's added tokens; None: not listed


@dataclass(frozen=True)
class DownloadRequest:
    """What to fetch from the Hub and how."""

    repo: str
    revision: str
    token: str | None
    allow: list[str]
    ignore: list[str]
    offline: bool
    interval: float = 5.0
    retries: int = 5
    backoff: float = 0.5


@dataclass(frozen=True)
class EngineFigures:
    """What one engine start said of its memory; None where it did not say."""

    weights_bytes: int | None = None
    graphs_bytes: int | None = None
    kv_tokens: int | None = None
    max_concurrency: float | None = None
    free_at_check_bytes: int | None = None  # a refused start: free memory at vLLM's start check
    total_at_check_bytes: int | None = None

    @property
    def refused(self) -> bool:
        return self.free_at_check_bytes is not None

    @property
    def said_anything(self) -> bool:
        return any(v is not None for v in self.__dict__.values())

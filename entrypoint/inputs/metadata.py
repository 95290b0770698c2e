"""Checkpoint metadata for the memory planner, before any weight byte is fetched.

From a local directory: ``config.json``, ``hf_quant_config.json`` and each
``*.safetensors`` header. From the Hub: the file list with sizes (one model
info call), the same JSON files, and each shard's header read with two ranged
GETs (the 8-byte length, then exactly the header), following the Hub's
redirect to its CDN. huggingface_hub's own header parser prefetches the first
100 kB of every shard, which on small shards is weight data; this reads none.
A fetched result is kept under ``$HF_HOME/spark-serve/metadata/`` so later
plans need no network.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from ..errors import CheckpointUnreadableError
from ..hub.hubcalls import with_retries
from ..hub.store import own_dir
from ..meta import CheckpointMeta, DownloadRequest, WeightSizes
from ..plan.checkpoint import added_tokens, chat_template_of, read_json
from ..plan.shape import split_weights, tied_embeddings

__all__ = ["cached_meta", "hub_meta", "local_meta"]


MAX_HEADER_BYTES = 25_000_000  # huggingface_hub's SAFETENSORS_MAX_HEADER_LENGTH


def header_sizes(header: dict[str, Any]) -> dict[str, int]:
    """Tensor name → bytes, from a parsed safetensors header."""
    sizes: dict[str, int] = {}
    for name, info in header.items():
        if name != "__metadata__" and isinstance(info, dict) and "data_offsets" in info:
            start, end = info["data_offsets"]
            sizes[name] = int(end) - int(start)
    return sizes


def read_local_header(path: Path) -> dict[str, Any]:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if not 2 <= length <= MAX_HEADER_BYTES:
            raise ValueError(f"{path.name}: implausible safetensors header length {length}")
        data = json.loads(handle.read(length))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name}: safetensors header is not an object")
    return data


def local_meta(directory: Path) -> CheckpointMeta:
    checkpoint = str(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointUnreadableError(
            checkpoint, "has no config.json", "point MODEL at a Hugging Face model directory"
        )
    config = read_json(directory / "config.json", checkpoint)
    quant = directory / "hf_quant_config.json"
    tensors: dict[str, int] = {}
    shards = sorted(directory.glob("*.safetensors"))
    for shard in shards:
        try:
            tensors.update(header_sizes(read_local_header(shard)))
        except (OSError, ValueError, struct.error):  # not a readable header: sizes only
            continue
    layers = _layers(config)
    total = sum(s.stat().st_size for s in shards)
    tokenizer_path = directory / "tokenizer_config.json"
    tokenizer = read_json(tokenizer_path, checkpoint) if tokenizer_path.is_file() else None
    jinja = directory / "chat_template.jinja"
    return CheckpointMeta(
        config,
        read_json(quant, checkpoint) if quant.is_file() else None,
        split_weights(
            tensors, layers, source="safetensors headers on disk", total=total, tied=tied_embeddings(config)
        ),
        f"local directory {directory}",
        files=tuple(sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())),
        chat_template=chat_template_of(
            tokenizer, jinja.read_text(encoding="utf-8", errors="replace") if jinja.is_file() else None
        ),
        special_tokens=added_tokens(tokenizer),
    )


def _layers(config: dict[str, Any]) -> int:
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    value = (text or {}).get("num_hidden_layers") or config.get("num_hidden_layers") or 0
    return int(value)


def _remote_header(req: DownloadRequest, commit: str, filename: str) -> dict[str, Any]:
    from huggingface_hub import get_session, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status  # type: ignore[attr-defined]

    url = hf_hub_url(req.repo, filename, revision=commit)
    headers = build_hf_headers(token=req.token)

    def ranged(start: int, end: int) -> bytes:
        with get_session().stream(
            "GET", url, headers={**headers, "Range": f"bytes={start}-{end}"}
        ) as response:
            hf_raise_for_status(response)
            wanted, got = end - start + 1, bytearray()
            for chunk in response.iter_bytes():
                got += chunk
                if len(got) >= wanted:
                    break  # a server that ignores Range is not read further
            return bytes(got[:wanted])

    (length,) = struct.unpack("<Q", with_retries(req, lambda: ranged(0, 7), f"reading {filename}'s header"))
    if not 2 <= length <= MAX_HEADER_BYTES:
        raise ValueError(f"{filename}: implausible safetensors header length {length}")
    data: dict[str, Any] = json.loads(
        with_retries(req, lambda: ranged(8, 7 + length), f"reading {filename}'s header")
    )
    return data


def _cache_path(repo: str, revision: str) -> Path:
    return own_dir() / "metadata" / repo.replace("/", "--") / f"{revision.replace('/', '--')}.json"


def cached_meta(repo: str, revision: str) -> CheckpointMeta | None:
    try:
        doc = json.loads(_cache_path(repo, revision).read_text())
        if "files" not in doc:  # written by an older release: fetch again
            return None
        return CheckpointMeta(
            doc["config"],
            doc["hf_quant"],
            WeightSizes(**doc["weights"]),
            doc["origin"] + " (cached)",
            files=tuple(doc.get("files", ())),
            commit=doc.get("commit"),
            chat_template=doc.get("chat_template"),
            special_tokens=None if doc.get("special_tokens") is None else tuple(doc["special_tokens"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def hub_meta(req: DownloadRequest) -> CheckpointMeta:
    """Metadata from the Hub without downloading weights; raises the typed Hub errors."""
    from huggingface_hub import hf_hub_download

    from ..hub.download import remote_files

    commit, files = remote_files(req)
    names = {f.path for f in files}
    if "config.json" not in names:
        raise CheckpointUnreadableError(
            f"{req.repo}@{req.revision}", "has no config.json", "point MODEL at a Hugging Face model repo"
        )

    def fetch_path(name: str) -> Path:
        return Path(
            with_retries(
                req,
                lambda: hf_hub_download(req.repo, name, revision=commit, token=req.token),
                f"downloading {name}",
            )
        )

    def fetch(name: str) -> dict[str, Any]:
        return read_json(fetch_path(name), f"{req.repo}@{commit[:12]}")

    config = fetch("config.json")
    hf_quant = fetch("hf_quant_config.json") if "hf_quant_config.json" in names else None
    tokenizer = fetch("tokenizer_config.json") if "tokenizer_config.json" in names else None
    template = chat_template_of(
        tokenizer,
        fetch_path("chat_template.jinja").read_text(encoding="utf-8", errors="replace")
        if "chat_template.jinja" in names
        else None,
    )
    shards = [f for f in files if f.path.endswith(".safetensors")]
    tensors: dict[str, int] = {}
    for shard in shards:
        try:
            tensors.update(header_sizes(_remote_header(req, commit, shard.path)))
        except (ValueError, struct.error):  # not a readable header (UnicodeDecodeError too): sizes only
            continue
    weights = split_weights(
        tensors,
        _layers(config),
        source="safetensors headers on the Hub",
        total=sum(f.size for f in shards),
        tied=tied_embeddings(config),
    )
    meta = CheckpointMeta(
        config,
        hf_quant,
        weights,
        f"Hub {req.repo}@{commit[:12]}",
        files=tuple(sorted(names)),
        commit=commit,
        chat_template=template,
        special_tokens=added_tokens(tokenizer),
    )
    target = _cache_path(req.repo, req.revision)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "config": config,
            "hf_quant": hf_quant,
            "weights": weights.__dict__,
            "origin": meta.origin,
            "files": list(meta.files),
            "commit": commit,
            "chat_template": template,
            "special_tokens": None if meta.special_tokens is None else list(meta.special_tokens),
        }
        target.write_text(json.dumps(doc))
    except OSError:
        pass  # a read-only cache only costs the next plan a metadata fetch
    return meta

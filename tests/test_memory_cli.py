"""The memory plan through the real CLI: shown by `plan`, refused by `download` and
`launch` before any weight byte leaves the (local) Hub."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from entrypoint.errors import ExitCode
from tests.conftest import run_cli
from tests.support.configs import seed_config
from tests.support.downloads import download, hub_env
from tests.support.hub import Hub

REPO_ID = "test/wide"


def safetensors(tensors: dict[str, int]) -> bytes:
    """A real safetensors file of zeros: header, then the bytes its offsets say."""
    header: dict[str, object] = {}
    offset = 0
    for name, size in tensors.items():
        header[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def wide_llama() -> bytes:
    """80 layers × 64 KV heads × 128: 2.6 MB of bf16 KV per token, 131072 tokens of context."""
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=8192,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=64,
        head_dim=128,
        intermediate_size=28672,
        vocab_size=1024,
        max_position_embeddings=131072,
        architectures=["LlamaForCausalLM"],
    ).to_dict()
    return json.dumps(config).encode()


WEIGHTS = safetensors(
    {"model.layers.0.mlp.down_proj.weight": 600_000, "model.visual.patch_embed.weight": 40_000}
)


def hub_with_wide_model() -> Hub:
    hub = Hub()
    hub.add_repo(
        REPO_ID, {"config.json": wide_llama(), "model.safetensors": WEIGHTS, "tokenizer.json": b"{}"}
    )
    return hub


def test_download_refuses_what_does_not_fit_before_any_weight_byte(tmp_path: Path) -> None:
    with hub_with_wide_model() as hub:
        # the full context, asked for: a derived profile would lower it to fit
        result = download(hub_env(hub.url, tmp_path, MODEL=REPO_ID, HARDWARE="gb10", MAX_MODEL_LEN="131072"))
    assert result.code == ExitCode.MEMORY_TOO_SMALL, result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "does not fit" in line and "nothing was downloaded" in line and "MAX_MODEL_LEN=" in line
    assert hub.gets["model.safetensors"] == 0  # never fetched
    header = struct.unpack("<Q", WEIGHTS[:8])[0] + 8
    assert hub.bytes_sent["model.safetensors"] == header  # its header, and not one weight byte
    snapshots = tmp_path / "hf" / "hub" / "models--test--wide" / "snapshots"
    assert not any(snapshots.rglob("*.safetensors")) if snapshots.exists() else True


def test_the_suggested_context_fits(tmp_path: Path) -> None:
    with hub_with_wide_model() as hub:
        env = hub_env(hub.url, tmp_path, MODEL=REPO_ID, HARDWARE="gb10")
        refused = download({**env, "MAX_MODEL_LEN": "131072"})
        suggested = refused.stderr.split("MAX_MODEL_LEN=")[1].split()[0]
        planned = run_cli(["plan", "--json"], {**env, "MAX_MODEL_LEN": suggested})
    assert planned.code == 0, planned.stderr
    doc = json.loads(planned.stdout)
    assert doc["memory"]["fits"] is True and doc["memory"]["max_model_len"] == int(suggested)


def test_plan_for_a_spark_shows_the_memory_object_and_fetches_no_weights(tmp_path: Path) -> None:
    with hub_with_wide_model() as hub:
        env = hub_env(hub.url, tmp_path, MODEL=REPO_ID, HARDWARE="gb10", MAX_MODEL_LEN="4096")
        result = run_cli(["plan", "--json"], env)
        again = run_cli(["plan"], env)  # metadata cached: no Hub traffic at all
        assert hub.gets["model.safetensors"] == 0 and hub.range_gets["model.safetensors"] == 2
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    memory = doc["memory"]
    for key in (
        "device_bytes",
        "reserve_bytes",
        "weights_bytes",
        "kv_bytes_per_token",
        "kv_cache_bytes",
        "max_concurrent_sequences",
        "decode_ceiling_tokens_per_s",
    ):
        assert key in memory, key
    assert memory["kv_bytes_per_token"] == 80 * 2 * 64 * 128 * 2
    assert memory["weights_bytes"] == len(WEIGHTS) and memory["hardware"] == "gb10"
    assert doc["hardware"]["key"] == "gb10" and doc["hardware"]["source"] == "HARDWARE"
    settings = doc["settings"]
    assert settings["kv_cache_memory_bytes"]["value"] == memory["kv_cache_bytes"]
    assert settings["kv_cache_memory_bytes"]["source"] == "plan"
    assert "--kv-cache-memory-bytes" in doc["argv"]
    assert again.code == 0 and "(cached)" in again.stdout and "KV per token" in again.stdout


def test_a_users_kv_size_and_utilization_win(tmp_path: Path) -> None:
    with hub_with_wide_model() as hub:
        env = hub_env(
            hub.url,
            tmp_path,
            MODEL=REPO_ID,
            HARDWARE="gb10",
            MAX_MODEL_LEN="4096",
            KV_CACHE_MEMORY_BYTES="17179869184",
            GPU_MEMORY_UTILIZATION="0.6",
        )
        doc = json.loads(run_cli(["plan", "--json"], env).stdout)
    assert doc["settings"]["kv_cache_memory_bytes"] == {
        "value": 17179869184,
        "source": "env",
        "origin": "KV_CACHE_MEMORY_BYTES",
    }
    assert doc["settings"]["gpu_memory_utilization"]["source"] == "env"


def test_plan_for_a_spark_works_with_no_gpu_and_no_network(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(seed_config("qwen3_5", mtp_layers=1)))
    (checkpoint / "model.safetensors").write_bytes(
        safetensors({"model.language_model.embed_tokens.weight": 4096})
    )
    result = run_cli(
        ["plan", "--hardware", "gb10", "--model", str(checkpoint), "--json"],
        hub_env("http://127.0.0.1:9", tmp_path, HF_HUB_OFFLINE="1"),
    )
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["memory"]["memory_kind"] == "unified" and doc["memory"]["fits"] is True
    # seed qwen3_5: 4 layers, one in four full attention, 1 KV head × 32 dims, bf16
    assert doc["memory"]["kv_bytes_per_token"] == 1 * 2 * 1 * 32 * 2

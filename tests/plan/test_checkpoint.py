from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import CheckpointMismatchError
from entrypoint.plan.checkpoint import describe, inspect_checkpoint
from tests.support.configs import MODELOPT_NVFP4, seed_config, write_checkpoint


@pytest.mark.parametrize("fmt", ["bf16", "ct-nvfp4", "ct-nvfp4a16", "modelopt-nvfp4", "modelopt-w4a16-nvfp4"])
def test_generated_checkpoints_are_recognised(checkpoint_factory, fmt: str) -> None:  # type: ignore[no-untyped-def]
    info = inspect_checkpoint(checkpoint_factory(fmt))
    assert info.quant_format == ("none" if fmt == "bf16" else fmt)
    assert info.has_weights and not info.is_moe and not info.is_hybrid and not info.has_vision


def test_llama_and_qwen3_are_plain_dense() -> None:
    for arch in ("llama", "qwen3"):
        info = describe(seed_config(arch), None, path=arch, has_weights=True)
        assert (info.is_moe, info.is_hybrid, info.has_vision, info.mtp_layers) == (False, False, False, 0)
        assert info.max_position_embeddings == 32768


def test_qwen3_5_is_hybrid_with_vision_and_mtp() -> None:
    info = describe(seed_config("qwen3_5", mtp_layers=1), None, path="q", has_weights=True)
    assert (info.is_hybrid, info.has_vision, info.mtp_layers, info.is_moe) == (True, True, 1, False)


def test_qwen3_5_moe_is_moe_and_hybrid() -> None:
    info = describe(seed_config("qwen3_5_moe"), MODELOPT_NVFP4, path="q", has_weights=True)
    assert (info.is_moe, info.is_hybrid, info.has_vision, info.mtp_layers) == (True, True, True, 0)
    assert info.quant_format == "modelopt-nvfp4"


def test_unknown_quantization_is_reported_as_other() -> None:
    config = seed_config("llama") | {"quantization_config": {"quant_method": "awq"}}
    assert describe(config, None, path="x", has_weights=True).quant_format == "other:awq"


def test_missing_config_is_a_mismatch(tmp_path: Path) -> None:
    with pytest.raises(CheckpointMismatchError, match=r"no config\.json"):
        inspect_checkpoint(tmp_path)


def test_corrupt_config_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointMismatchError, match=r"config\.json is not valid JSON"):
        inspect_checkpoint(tmp_path)


def test_missing_weights_are_noticed(tmp_path: Path) -> None:
    info = inspect_checkpoint(write_checkpoint(tmp_path, seed_config("llama"), weights=False))
    assert not info.has_weights


def test_inspection_never_imports_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_checkpoint(tmp_path, seed_config("llama"))
    code = (
        "import sys; from pathlib import Path; from entrypoint.plan.checkpoint import inspect_checkpoint;"
        f"inspect_checkpoint(Path({str(tmp_path)!r})); print('torch' in sys.modules, 'vllm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import CheckpointMismatchError, ConflictError
from entrypoint.plan.checkpoint import HYBRID_MIN_BATCHED_TOKENS, describe
from entrypoint.plan.fit import fit_checkpoint
from entrypoint.plan.profile import Catalog
from entrypoint.plan.resolve import resolve
from tests.conftest import PROFILES
from tests.support.configs import MODELOPT_NVFP4, seed_config

CATALOG = Catalog([PROFILES])
CT_NVFP4A16 = {
    "quant_method": "compressed-tensors",
    "format": "nvfp4-pack-quantized",
    "config_groups": {"g": {"weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
}


def axe_info(*, mtp_layers: int) -> object:
    config = seed_config("qwen3_5", mtp_layers=mtp_layers) | {"quantization_config": CT_NVFP4A16}
    return describe(config, None, path="ckpt", has_weights=True)


def test_format_mismatch_names_both_formats_and_the_field() -> None:
    plan = resolve(CATALOG, {"PROFILE": "qwen3-4b-nvfp4"}, {})
    info = describe(seed_config("qwen3"), MODELOPT_NVFP4, path="ckpt", has_weights=True)
    with pytest.raises(CheckpointMismatchError) as err:
        fit_checkpoint(plan, info)
    text = str(err.value)
    assert "ModelOpt NVFP4" in text and "compressed-tensors" in text and "quantization" in text


def test_mtp_variant_needs_mtp_layers() -> None:
    plan = resolve(
        CATALOG, {"PROFILE": "axe-strada-28b-nvfp4a16", "VARIANT": "mtp", "MAX_MODEL_LEN": "1024"}, {}
    )
    with pytest.raises(CheckpointMismatchError, match=r"no MTP layers.*variants\.mtp"):
        fit_checkpoint(plan, axe_info(mtp_layers=0))
    assert fit_checkpoint(plan, axe_info(mtp_layers=1)).value("speculative_config")["method"] == "mtp"


def test_hybrid_checkpoint_gets_the_batched_tokens_floor(tmp_path: Path) -> None:
    plan = resolve(CATALOG, {"MODEL": str(tmp_path)}, {})
    fitted = fit_checkpoint(plan, describe(seed_config("qwen3_5"), None, path="c", has_weights=True))
    setting = fitted.settings["max_num_batched_tokens"]
    assert (setting.value, setting.source) == (HYBRID_MIN_BATCHED_TOKENS, "checkpoint")


def test_hybrid_checkpoint_rejects_a_budget_below_the_floor() -> None:
    plan = resolve(
        CATALOG,
        {"PROFILE": "axe-strada-28b-nvfp4a16", "MAX_NUM_BATCHED_TOKENS": "1024", "MAX_MODEL_LEN": "1024"},
        {},
    )
    with pytest.raises(ConflictError, match=r"MAX_NUM_BATCHED_TOKENS.*2096"):
        fit_checkpoint(plan, axe_info(mtp_layers=0))


def test_context_longer_than_the_checkpoint_is_refused() -> None:
    plan = resolve(CATALOG, {"PROFILE": "axe-strada-28b-nvfp4a16", "VARIANT": "long-context"}, {})
    with pytest.raises(ConflictError, match="set MAX_MODEL_LEN to at most 32768"):
        fit_checkpoint(plan, axe_info(mtp_layers=0))


def test_checkpoint_without_weights_is_refused(tmp_path: Path) -> None:
    plan = resolve(CATALOG, {"MODEL": str(tmp_path)}, {})
    with pytest.raises(CheckpointMismatchError, match="safetensors"):
        fit_checkpoint(plan, describe(seed_config("llama"), None, path="c", has_weights=False))

from __future__ import annotations

from pathlib import Path

import pytest

from entrypoint.errors import ProfileInvalidError, ProfileSyntaxError, UnknownProfileError
from entrypoint.plan.profile import Catalog, check_variant, parse_profile
from tests.conftest import PROFILES

SEEDS = {
    "ax-3.1-nvfp4": ("dlsxj101/A.X-3.1-NVFP4", "modelopt-nvfp4"),
    "qwen3-vlto-32b-nvfp4": ("Ex0bit/Qwen3-VLTO-32B-Instruct-NVFP4", "modelopt-nvfp4"),
    "axe-strada-28b-nvfp4a16": ("srswti/axe-strada-28b-nvfp4a16", "ct-nvfp4a16"),
    "qwen3-4b-nvfp4": ("DrQianXu/Qwen3-4B-nvfp4-Compressible", "ct-nvfp4"),
    "nex-n2-mini-nvfp4": ("r0b0tlab/nex-n2-mini-nvfp4", "modelopt-nvfp4"),
}
MINIMAL = """
repo: org/model
served_model_name: m
quantization: none
hardware: {min_memory_gb: 1}
"""


def write(tmp_path: Path, text: str, name: str = "p") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_every_seed_profile_loads_with_its_repo_and_format() -> None:
    catalog = Catalog([PROFILES])
    assert set(catalog.names()) == set(SEEDS)
    for name, (repo, fmt) in SEEDS.items():
        profile = catalog.get(name).profile
        assert (profile.repo, profile.quantization) == (repo, fmt)


def test_axe_strada_variants_follow_the_card_with_corrections() -> None:
    profile = Catalog([PROFILES]).get("axe-strada-28b-nvfp4a16").profile
    assert set(profile.variants) == {"text-only", "multimodal", "tools", "mtp", "long-context"}
    assert profile.vllm.reasoning_parser == "qwen3"
    assert profile.variants["text-only"].vllm.language_model_only is True
    assert profile.variants["tools"].vllm.tool_call_parser == "qwen3_coder"
    spec = profile.variants["mtp"].vllm.speculative_config
    assert spec is not None and (spec.method, spec.num_speculative_tokens) == ("mtp", 3)
    long = profile.variants["long-context"].vllm
    assert (long.max_model_len, long.kv_cache_dtype, long.max_num_seqs) == (262144, "fp8", 2)
    assert (long.gpu_memory_utilization, long.trust_remote_code) == (0.9, True)


def test_nex_profile_meets_the_hybrid_floor_and_uses_flashinfer_cutlass() -> None:
    vllm = Catalog([PROFILES]).get("nex-n2-mini-nvfp4").profile.vllm
    assert vllm.max_num_batched_tokens is not None and vllm.max_num_batched_tokens >= 2096
    assert (vllm.linear_backend, vllm.moe_backend, vllm.kv_cache_dtype) == (
        "flashinfer_cutlass",
        "flashinfer_cutlass",
        "fp8",
    )


def test_no_profile_passes_a_quantization_flag() -> None:
    for loaded in Catalog([PROFILES]).all():
        args = [*loaded.profile.vllm.extra_args]
        for variant in loaded.profile.variants.values():
            args += variant.vllm.extra_args
        assert not any(a.startswith("--quantization") for a in args)


def test_unknown_field_is_rejected_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "vllm: {max_model_lenn: 10}\n")
    with pytest.raises(ProfileInvalidError) as info:
        parse_profile(path)
    assert info.value.field == "vllm.max_model_lenn"
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_out_of_range_utilization_names_the_bound(tmp_path: Path) -> None:
    with pytest.raises(ProfileInvalidError, match=r"gpu_memory_utilization.*less than or equal to 1"):
        parse_profile(write(tmp_path, MINIMAL + "vllm: {gpu_memory_utilization: 1.5}\n"))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ProfileSyntaxError, match="line"):
        parse_profile(write(tmp_path, MINIMAL + "vllm: [unclosed\n"))


def test_default_variant_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ProfileInvalidError, match="default_variant 'nope'"):
        parse_profile(write(tmp_path, MINIMAL + "default_variant: nope\n"))


def test_unknown_profile_suggests_the_closest(tmp_path: Path) -> None:
    with pytest.raises(UnknownProfileError) as info:
        Catalog([PROFILES]).get("qwen3-4b-nvfp")
    assert "did you mean 'qwen3-4b-nvfp4'" in str(info.value)
    assert isinstance(info.value, LookupError)


def test_unknown_variant_lists_the_known_ones() -> None:
    loaded = Catalog([PROFILES]).get("axe-strada-28b-nvfp4a16")
    with pytest.raises(UnknownProfileError, match=r"did you mean 'mtp'.*long-context, mtp, multimodal"):
        check_variant(loaded, "mpt", where="VARIANT")


def test_later_directory_overrides_earlier(tmp_path: Path) -> None:
    write(tmp_path, MINIMAL.replace("served_model_name: m", "served_model_name: mine"), "qwen3-4b-nvfp4")
    catalog = Catalog([PROFILES, tmp_path])
    assert catalog.get("qwen3-4b-nvfp4").profile.served_model_name == "mine"
    assert len(catalog.names()) == len(SEEDS)

"""MODELS and stack files: the entries, and the errors that name the field."""

from __future__ import annotations

import pytest

from entrypoint.errors import ExitCode, StackInvalidError
from entrypoint.plan.stack import MAX_MODELS, from_file, from_list

PROFILES = {"qwen3-4b-nvfp4", "axe"}


def test_a_list_names_profiles_variants_and_repos() -> None:
    entries = from_list("qwen3-4b-nvfp4, axe:fp8kv,owner/repo", PROFILES)
    assert [(e.model, e.variant, e.slug) for e in entries] == [
        ("qwen3-4b-nvfp4", None, "qwen3-4b-nvfp4"),
        ("axe", "fp8kv", "axe-fp8kv"),
        ("owner/repo", None, "owner-repo"),
    ]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("a,,b", "empty name"),
        ("nope:v", "no profile"),
        ("owner/repo,owner/repo", "named twice"),
        (",".join(f"o/m{i}" for i in range(MAX_MODELS + 1)), "models"),
    ],
)
def test_a_bad_list_is_refused_naming_models(value: str, says: str) -> None:
    with pytest.raises(StackInvalidError) as err:
        from_list(value, PROFILES)
    assert err.value.exit_code == ExitCode.STACK_INVALID and says in str(err.value)
    assert str(err.value).startswith("MODELS: ")


def test_a_stack_file_carries_shares_floors_and_settings() -> None:
    data = {
        "description": "coder and chat",
        "models": [
            {"model": "axe", "min_seqs": 4, "settings": {"max_model_len": 16384}},
            {"model": "qwen3-4b-nvfp4", "kv_share": 0.25},
        ],
    }
    a, b = from_file(data, PROFILES, "stacks/x.yaml")
    assert (a.min_seqs, a.settings, b.kv_share) == (4, {"max_model_len": 16384}, 0.25)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"models": []}, "models"),
        ({"models": [{"model": "axe", "kv_shares": 1}]}, "models.0.kv_shares"),
        (
            {"models": [{"model": "axe", "kv_share": 0.7}, {"model": "owner/r", "kv_share": 0.4}]},
            "(top level)",
        ),
        ({"models": [{"model": "axe", "min_seqs": 0}]}, "models.0.min_seqs"),
        ("not a mapping", "(top level)"),
    ],
)
def test_a_bad_stack_file_names_the_file_and_the_field(data: object, field: str) -> None:
    with pytest.raises(StackInvalidError) as err:
        from_file(data, PROFILES, "stacks/x.yaml")
    assert str(err.value).startswith(f"stacks/x.yaml: {field}"), str(err.value)


def test_every_shipped_stack_names_shipped_profiles() -> None:
    from entrypoint.plan.profile import Catalog
    from entrypoint.plan.tables import load_yaml
    from entrypoint.shipped import configs

    profiles = set(Catalog.from_path_list(str(configs("profiles"))).names())
    files = sorted(configs("stacks").glob("*.yaml"))
    assert files
    for path in files:
        entries = from_file(load_yaml(path.read_text()), profiles, str(path))
        assert all(e.model in profiles for e in entries), path

"""The docs are derived from the option declarations and kept equal to them."""

from __future__ import annotations

import re

from entrypoint.plan.options import OPTIONS, Option
from entrypoint.show.options import READ_ELSEWHERE, default_text, range_text, rendered
from server.settings import SIDECAR_OPTIONS, SidecarSettings, load_settings
from tests.conftest import _OWN_VARS, REPO


def test_the_readme_settings_tables_are_the_declarations() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "<!-- end launcher settings -->" in readme and "<!-- end sidecar settings -->" in readme
    assert rendered(readme) == readme, "run `make docs` to regenerate the README's settings tables"
    for option in (*OPTIONS, *SIDECAR_OPTIONS):
        if option.env:
            assert f"| `{option.env}` |" in readme, option.env
    for name, _, _ in READ_ELSEWHERE:
        assert f"| `{name}` |" in readme


def test_a_changed_declaration_changes_the_table() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stale = readme.replace("| `PROGRESS_INTERVAL` |", "| `PROGRESS_INTERVAL_OLD` |")
    assert rendered(stale) == readme


def test_ranges_and_defaults_come_from_the_parsers_and_declarations() -> None:
    by_env = {o.env: o for o in (*OPTIONS, *SIDECAR_OPTIONS) if o.env}
    assert range_text(by_env["MAX_NUM_SEQS"]) == "1 to 65,536"  # the profile schema's own field
    assert range_text(by_env["GPU_MEMORY_UTILIZATION"]) == "above 0, at most 1"
    assert range_text(by_env["CLUSTER_PORT"]) == "from 1024 to 65428"
    assert default_text(by_env["ENGINE_COMMAND"]) == "`vllm serve {model}`"
    assert default_text(by_env["HEAL_AFTER"]) == "`3`"


def _env_example() -> dict[str, tuple[str, str]]:
    """variable → (its value, the comment above it) in .env.example."""
    found: dict[str, tuple[str, str]] = {}
    comment: list[str] = []
    for line in (REPO / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            comment.append(line.lstrip("# "))
        elif "=" in line:
            name, value = line.split("=", 1)
            found[name.strip()] = (value.strip(), " ".join(comment))
            comment = []
        else:
            comment = []
    return found


def _plain_default(option: Option) -> str | None:
    if option.shown_default is not None or option.default_from is not None or option.default is None:
        return None
    return default_text(option).strip("`")


def test_env_example_states_each_declared_default_it_lists() -> None:
    example = _env_example()
    listed = [o for o in (*OPTIONS, *SIDECAR_OPTIONS) if o.env in example]
    assert len(listed) >= 15
    for option in listed:
        default = _plain_default(option)
        if default is None:
            continue
        value, comment = example[str(option.env)]
        stated = re.search(r"Default: ([^.;]+(?:\.\d+)?)", comment)
        assert value in ("", default) and stated and default in stated.group(1), (option.env, value, comment)


def test_the_sidecar_settings_are_their_options_and_the_scrubbing_covers_every_variable() -> None:
    assert [o.name for o in SIDECAR_OPTIONS] == list(SidecarSettings.__dataclass_fields__)
    settings = load_settings({"PORT": "8123"}, {})
    assert settings.vllm_url == "http://127.0.0.1:8123" and settings.heal_after == 3
    assert {o.env for o in (*OPTIONS, *SIDECAR_OPTIONS) if o.env} <= _OWN_VARS

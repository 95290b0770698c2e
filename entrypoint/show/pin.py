"""A derived profile as YAML to save and edit (pure): the schema's fields, each
value commented with where it came from."""

from __future__ import annotations

from typing import Any

import yaml

from ..plan.derive import Derived


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...")


def _emit(data: dict[str, Any], reasons: dict[str, str], path: str, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    for key, value in data.items():
        here = f"{path}{key}"
        why = reasons.get(here)
        comment = f"  # {why}" if why else ""
        if isinstance(value, dict) and value:
            out.append(f"{pad}{key}:{comment}")
            _emit(value, reasons, here + ".", indent + 1, out)
        else:
            out.append(f"{pad}{key}: {_scalar(value)}{comment}")


def render(derived: Derived, name: str, version: str) -> str:
    """The YAML text; it validates against the profile schema unchanged."""
    dumped = derived.profile.model_dump(mode="json", exclude_defaults=True)
    first = {k: getattr(derived.profile, k) for k in ("description", "repo", "revision")}
    data = {**first, **{k: v for k, v in dumped.items() if k not in first}}
    commit = f" at commit {derived.commit}" if derived.commit else ""
    lines = [
        f"# Derived by spark-serve {version} from {derived.source}{commit} for {derived.device_key}.",
        f"# Save as <PROFILES_DIR>/{name}.yaml, edit, then: spark-serve check;"
        f" spark-serve plan --profile {name}",
    ]
    if derived.commit:
        lines.append(f"# To pin the weights too, set revision to {derived.commit}.")
    lines += [f"# note: {note}" for note in derived.notes]
    _emit(data, derived.reasons, "", 0, lines)
    return "\n".join(lines) + "\n"

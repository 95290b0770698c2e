"""The compose file as `docker compose config` would see it: .env values and
${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err} interpolated (no Docker engine here)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

_VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = env.get(name)
        unset_or_empty = value is None or value == ""
        if (op == ":-" and unset_or_empty) or (op == "-" and value is None):
            return arg
        if (op == ":?" and unset_or_empty) or (op == "?" and value is None):
            raise ValueError(f"required variable {name}: {arg}")
        return value or ""

    return _VAR.sub(replace, text)


def _walk(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node


def load_compose(
    path: Path, env_file: Path | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, Any]:
    env: dict[str, str] = {}
    if env_file is not None:
        env.update({k: v or "" for k, v in dotenv_values(env_file).items()})
    env.update(extra or {})
    raw = yaml.safe_load(path.read_text())  # YAML merge keys (<<) are resolved here
    return dict(_walk(raw, env))


def variables(path: Path) -> set[str]:
    return {m["name"] for m in _VAR.finditer(path.read_text()) if m["name"]}

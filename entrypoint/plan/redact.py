"""Secrets out of everything shown: command lines, settings and environments (pure).

The secret-bearing flags are vLLM's own: the fields its API server never logs
(``_SENSITIVE_ARG_FIELDS`` in ``vllm/entrypoints/serve/utils/api_utils.py``,
held equal to this set by a test). vLLM's parser accepts each in several
spellings, and every one is recognised here:

- ``--api-key X``, ``--api_key X``, ``--api-key=X``, ``--api_key=X`` (its
  parser turns underscores in a flag's name into dashes);
- an unambiguous prefix such as ``--api-k X`` (argparse's abbreviations, which
  vLLM's parser leaves on).

A word that names a secret flag hides the next word, or what follows its ``=``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

REDACTED = "<redacted>"
# vLLM's sensitive argument fields, as flags.
SECRET_FLAGS: tuple[str, ...] = ("--api-key", "--hf-token", "--watermark-config")
# The environment variables that carry the same secrets, and ours.
SECRET_ENV_NAMES: frozenset[str] = frozenset(
    {
        "VLLM_API_KEY",
        "API_KEY",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "RAY_AUTH_TOKEN",
        "GF_SECURITY_ADMIN_PASSWORD",
    }
)
# A secret flag whose value has a variable of ours, which keeps it off every command line.
INSTEAD: dict[str, str] = {"--api-key": "API_KEY", "--hf-token": "HF_TOKEN"}
_SHORTEST_PREFIX = len("--ap")


def _name(word: str) -> str:
    """The flag's name as vLLM's parser reads it: underscores before any ``.`` become dashes."""
    key = word.split("=", 1)[0]
    head, dot, rest = key[2:].partition(".")
    return "--" + head.replace("_", "-") + dot + rest


def secret_flag(word: str) -> bool:
    """Whether ``word`` (a flag, with or without ``=value``) names a secret flag."""
    if not word.startswith("--") or len(word) <= 2:
        return False
    name = _name(word)
    if name in SECRET_FLAGS:
        return True
    return len(name) >= _SHORTEST_PREFIX and any(flag.startswith(name) for flag in SECRET_FLAGS)


def shown_argv(argv: Iterable[str]) -> list[str]:
    """``argv`` with the value of every secret flag replaced by ``<redacted>``."""
    shown: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next and not word.startswith("--"):
            shown.append(REDACTED)
        elif secret_flag(word) and "=" in word:
            shown.append(word.split("=", 1)[0] + "=" + REDACTED)
        else:
            shown.append(word)
        hide_next = secret_flag(word) and "=" not in word
    return shown


def has_secret(argv: Sequence[str]) -> str | None:
    """The first secret flag in ``argv`` as it was written (without its value), or None."""
    for word in argv:
        if secret_flag(word):
            return word.split("=", 1)[0]
    return None


def replaced_by_variable(argv: Sequence[str]) -> tuple[str, str] | None:
    """The first flag in ``argv`` whose secret has a variable of ours instead, as written,
    with that variable: ``--api_key`` → API_KEY, ``--hf-token`` → HF_TOKEN."""
    for word in argv:
        if secret_flag(word):
            name = _name(word)
            for flag, variable in INSTEAD.items():
                if flag.startswith(name):
                    return word.split("=", 1)[0], variable
    return None


def shown_value(value: Any) -> Any:
    """A setting's value for display: argument lists are redacted like a command line."""
    if isinstance(value, (list, tuple)) and all(isinstance(w, str) for w in value):
        return shown_argv(value)
    return value

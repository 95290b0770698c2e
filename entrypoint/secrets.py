"""Secrets given as files: ``API_KEY_FILE``, ``HF_TOKEN_FILE``, or ``$SECRETS_DIR``.

A mounted file keeps a secret out of the container's configuration, where
``docker inspect`` shows every environment variable. The commands read these
once, at their start, into the same settings the plain variables set:

- ``NAME_FILE`` names the file; one that cannot be read, or is empty, is an error;
- else ``$SECRETS_DIR/<name>`` (default ``/run/secrets``, where compose mounts ``./secrets``),
  used when it exists: ``api_key``, ``hf_token``.

A plain ``NAME`` that is set wins, and must agree with an explicit ``NAME_FILE``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .errors import ConflictError, SecretUnreadableError

FILE_SECRETS: tuple[str, ...] = ("API_KEY", "HF_TOKEN")
DEFAULT_SECRETS_DIR = "/run/secrets"  # where compose mounts ./secrets


def read_secret_file(variable: str, path: str) -> str:
    """The secret in ``path``: its first line, stripped."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(65536)
    except OSError as err:
        raise SecretUnreadableError(variable, path, err.strerror or type(err).__name__) from err
    except UnicodeDecodeError as err:
        raise SecretUnreadableError(variable, path, "not UTF-8 text") from err
    value = (text.strip().splitlines() or [""])[0].strip()
    if not value:
        raise SecretUnreadableError(variable, path, "the file is empty")
    return value


def with_file_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with each ``NAME_FILE`` read into ``NAME`` (and ``NAME_FILE`` kept)."""
    env = dict(environ)
    folder = env.get("SECRETS_DIR") or DEFAULT_SECRETS_DIR
    for name in FILE_SECRETS:
        path = env.get(name + "_FILE")
        default = os.path.join(folder, name.lower())
        if not path and not env.get(name) and os.path.isfile(default):
            path = default
        if not path:
            continue
        value = read_secret_file(name + "_FILE", path)
        if env.get(name) and env[name] != value:
            raise ConflictError(
                [name, name + "_FILE"],
                f"{name} and {name}_FILE are both set and differ",
                f"set only one of {name} and {name}_FILE",
            )
        env[name] = value
    return env

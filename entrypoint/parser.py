"""The ``spark-serve`` parser: one entry per command, its flags derived from the
option declarations (:mod:`entrypoint.plan.options`, the sidecar's in
:mod:`server.settings`).

Every command is listed (``--help`` shows them all), but only the named
command's flags are built: a ``plan`` pays for its own flags, not for ten others.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from . import __version__
from .plan.options import BY_NAME, OPTIONS, Option

__all__ = ["build_parser"]


def _flags(parser: argparse.ArgumentParser, options: tuple[Option, ...] = OPTIONS) -> None:
    for option in options:
        if option.flag:
            env = f" [env {option.env}]" if option.env else ""
            parser.add_argument(option.flag, dest=option.name, metavar="VALUE", help=option.help + env)


def _named(*names: str) -> tuple[Option, ...]:
    return tuple(BY_NAME[name] for name in names)


def _profiles(parser: argparse.ArgumentParser) -> None:
    _flags(parser, _named("profiles_dir", "hardware"))
    sub = parser.add_subparsers(dest="profiles_command", metavar="SUBCOMMAND")
    derive = sub.add_parser(
        "derive", help="print a profile derived from a checkpoint (Hub repo id or path) as YAML to pin"
    )
    derive.add_argument("model", metavar="MODEL", help="Hub repo id (owner/name) or local checkpoint path")
    derive.add_argument("--name", metavar="NAME", help="the profile's name (default: from MODEL)")
    _flags(derive, _named("revision", "hardware"))


def _plan(parser: argparse.ArgumentParser) -> None:
    _flags(parser)
    parser.add_argument("--json", action="store_true", help="print JSON (same as --format json)")
    parser.add_argument(
        "--format",
        choices=("text", "json", "helm-values"),
        default="text",
        help="text, json, or values for vLLM's production-stack Helm chart (deploy/kubernetes)",
    )
    parser.add_argument(
        "--release", default="spark-serve", metavar="NAME", help="helm-values: the Helm release name"
    )


def _doctor(parser: argparse.ArgumentParser) -> None:
    _flags(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")


def _bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", metavar="URL", help="the stack's OpenAI endpoint (default http://127.0.0.1:$PORT)"
    )
    parser.add_argument(
        "--sidecar-url", metavar="URL", help="the sidecar (default http://127.0.0.1:$SIDECAR_PORT)"
    )
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="a file holding the stack's API key [env API_KEY, API_KEY_FILE]",
    )
    parser.add_argument("--model", metavar="NAME", help="served model name (default: the one served)")
    parser.add_argument("--tokenizer", metavar="PATH", help="local tokenizer (default: the served snapshot)")
    parser.add_argument("--out", metavar="DIR", help="results folder (default ~/spark-serve-bench/<time>)")
    for flag, default in (("--pp", "512 2048"), ("--tg", "128"), ("--depth", "0 4096 8192 16384")):
        parser.add_argument(flag, type=int, nargs="+", metavar="N", help=f"tokens (default {default})")
    parser.add_argument("--concurrency", type=int, nargs="+", metavar="N", help="levels (default 1 2 4 8)")
    parser.add_argument("--runs", type=int, metavar="N", help="runs per row (default 3)")
    parser.add_argument("--sample-interval", type=float, metavar="S", help="seconds between samples (1)")
    parser.add_argument("--compare", metavar="RESULT.json", help="a previous results.json to set beside")
    parser.add_argument("benchy_args", nargs=argparse.REMAINDER, help="after --: more llama-benchy flags")


def _token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", metavar="PATH", help="file to create (never overwritten)")


def _sidecar(parser: argparse.ArgumentParser) -> None:
    from server.settings import SIDECAR_OPTIONS

    _flags(parser, SIDECAR_OPTIONS)


def _only(*names: str) -> Callable[[argparse.ArgumentParser], None]:
    return lambda parser: _flags(parser, _named(*names))


# name → (help, what adds its arguments), in the order --help lists them
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], Any]]] = {
    "profiles": ("list profiles, variants, repos and hardware needs", _profiles),
    "plan": ("show every resolved setting, the argv and the environment", _plan),
    "check": ("validate every profile × variant against the installed vLLM", _only("profiles_dir")),
    "download": ("download and verify the checkpoint into HF_HOME, then stop", _flags),
    "launch": ("resolve, download/verify the checkpoint and exec vLLM", _flags),
    "worker": ("on another Spark: download/verify the same checkpoint and join CLUSTER_HEAD's Ray", _flags),
    "doctor": ("report GPU, memory, disk, Hub, versions, caches, ports and the plan, with fixes", _doctor),
    "reset": (
        "forget failed engine starts and wake a halted launcher (restart back-off)",
        _only("state_dir"),
    ),
    "bench": (
        "the cards' benchmark tables against the running stack (llama-benchy), with power and ceiling",
        _bench,
    ),
    "cluster-token": ("make a new Ray token for a cluster: into PATH (mode 0600), else on stdout", _token),
    "sidecar": ("liveness, readiness, status and metrics for ops (port 8001)", _sidecar),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command`` (argv's first word), only that command's flags
    are built. Without one (or an unknown word), every command's are."""
    parser = argparse.ArgumentParser(
        prog="spark-serve", description="Serve NVFP4 LLMs with vLLM on DGX Spark."
    )
    parser.add_argument("--version", action="version", version=f"spark-serve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    every = command not in _COMMANDS
    for name, (text, add) in _COMMANDS.items():
        each = sub.add_parser(name, help=text)
        if every or name == command:
            add(each)
    return parser

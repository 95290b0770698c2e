"""Sidecar settings, declared once like the launcher's options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from entrypoint.plan.options import (
    DAY_S,
    Option,
    OptionValueError,
    Parser,
    count,
    default_state_dir,
    option_value,
    parse_port,
    parse_switch,
    parse_text,
    seconds,
)


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise OptionValueError(f"invalid URL {raw!r}", "use http://HOST:PORT, e.g. http://127.0.0.1:8000")
    return raw.rstrip("/")


def _vllm_url(env: Mapping[str, str]) -> str:
    return f"http://127.0.0.1:{env.get('PORT') or 8000}"


def _option(
    env: str | None,
    flag: str | None,
    parse: Parser,
    help: str,
    *,
    secret: bool = False,
    shown_default: str | None = None,
    **default: Any,
) -> Any:
    """A settings field declared with its option (the field's name is the option's)."""
    return field(
        metadata={"option": (env, flag, parse, help, secret, {**default, "shown_default": shown_default})}
    )


@dataclass(frozen=True)
class SidecarSettings:
    """Each field is one option: name and type here, variable, flag, parser, help and default in it."""

    sidecar_host: str = _option(
        "SIDECAR_HOST", "--host", parse_text, "address the sidecar binds", default="0.0.0.0"
    )
    sidecar_port: int = _option("SIDECAR_PORT", "--port", parse_port, "port of the sidecar", default=8001)
    vllm_url: str = _option(
        "VLLM_URL",
        "--vllm-url",
        _url,
        "where vLLM answers",
        default_from=_vllm_url,
        shown_default="`http://127.0.0.1:$PORT`",
    )
    state_dir: str = _option(
        "STATE_DIR",
        "--state-dir",
        parse_text,
        "the launcher's state directory (shared; writable, so the sidecar can record a start that "
        "reached ready, which resets the restart back-off)",
        default_from=default_state_dir,
        shown_default="as the launcher",
    )
    api_key: str | None = _option(
        "API_KEY",
        None,
        parse_text,
        "sent on every request to vLLM but /health and /metrics (API_KEY_FILE, $SECRETS_DIR/api_key too)",
        secret=True,
        default=None,
    )
    ready_window: float = _option(
        "READY_PROGRESS_WINDOW",
        "--ready-window",
        seconds(1, DAY_S),
        "seconds with requests running but no token progress before the sidecar asks with a confirmation",
        default=60.0,
    )
    poll_interval: float = _option(
        "READY_POLL_INTERVAL",
        "--poll-interval",
        seconds(0.05, 60),
        "seconds between engine checks",
        default=1.0,
    )
    scrape_timeout: float = _option(
        "SCRAPE_TIMEOUT", "--scrape-timeout", seconds(0.1, 300), "timeout for vLLM's /metrics", default=3.0
    )
    warmup: bool = _option(
        "WARMUP",
        "--warmup",
        parse_switch,
        "1: ready only after a warm-up generation returned; 0: ready once the model is listed",
        default=True,
    )
    warmup_timeout: float = _option(
        "WARMUP_TIMEOUT",
        "--warmup-timeout",
        seconds(1, DAY_S),
        "seconds the warm-up may take before it counts as failed (then tried again every "
        "PROBE_INTERVAL); the only limit on a warm-up",
        default=600.0,
    )
    probe_interval: float = _option(
        "PROBE_INTERVAL",
        "--probe-interval",
        seconds(0.5, DAY_S),
        "seconds with no request answered and none running or waiting before a one-token probe",
        default=60.0,
    )
    probe_timeout: float = _option(
        "PROBE_TIMEOUT",
        "--probe-timeout",
        seconds(1, 3600),
        "seconds a probe or confirmation may take before it counts as failed",
        default=30.0,
    )
    launcher: bool = _option(
        "LAUNCHER",
        "--launcher",
        parse_switch,
        "1: the engine is started by `spark-serve launch` (its state file gives the phase); 0: by "
        "something else (the Helm chart, deploy/kubernetes): the engine alone is judged, from the "
        "sidecar's start, and never ended",
        default=True,
    )
    heal: bool = _option(
        "HEAL",
        "--heal",
        parse_switch,
        "1: end a hung engine so its restart policy brings it back; 0: report it only",
        default=True,
    )
    heal_after: int = _option(
        "HEAL_AFTER",
        "--heal-after",
        count(1, 100),
        "failed warm-ups, idle probes or confirmations in a row that make the engine hung",
        default=3,
    )
    heal_backoff_s: float = _option(
        "HEAL_BACKOFF_S",
        "--heal-backoff-s",
        seconds(1, DAY_S),
        "least seconds between heals, doubled for each heal in a row of an engine that never got ready "
        "(at most 1800)",
        default=60.0,
    )


SIDECAR_OPTIONS: tuple[Option, ...] = tuple(
    Option(f.name, env, flag, parse, help, secret, **default)
    for f in fields(SidecarSettings)
    for env, flag, parse, help, secret, default in [f.metadata["option"]]
)


def load_settings(env: Mapping[str, str], cli: Mapping[str, str | None]) -> SidecarSettings:
    return SidecarSettings(**{o.name: option_value(o, env, cli) for o in SIDECAR_OPTIONS})

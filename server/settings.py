"""Sidecar settings, declared once like the launcher's options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from entrypoint.plan.options import (
    DAY_S,
    Option,
    OptionValueError,
    count,
    parse_port,
    parse_switch,
    parse_text,
    seconds,
)
from entrypoint.plan.resolve import default_state_dir, parse_option, read_raw


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise OptionValueError(f"invalid URL {raw!r}", "use http://HOST:PORT, e.g. http://127.0.0.1:8000")
    return raw.rstrip("/")


SIDECAR_OPTIONS: tuple[Option, ...] = (
    Option("sidecar_host", "SIDECAR_HOST", "--host", parse_text, "address the sidecar binds"),
    Option("sidecar_port", "SIDECAR_PORT", "--port", parse_port, "port of the sidecar"),
    Option("vllm_url", "VLLM_URL", "--vllm-url", _url, "where vLLM's API answers"),
    Option("state_dir", "STATE_DIR", "--state-dir", parse_text, "directory of the launcher's state file"),
    Option(
        "api_key",
        "API_KEY",
        None,
        parse_text,
        "the stack's API key, sent on every request to vLLM but /health and /metrics",
        secret=True,
    ),
    Option(
        "ready_window",
        "READY_PROGRESS_WINDOW",
        "--ready-window",
        seconds(1, DAY_S),
        "seconds without token progress, while requests run, before not ready",
    ),
    Option(
        "poll_interval",
        "READY_POLL_INTERVAL",
        "--poll-interval",
        seconds(0.05, 60),
        "seconds between engine checks",
    ),
    Option(
        "scrape_timeout",
        "SCRAPE_TIMEOUT",
        "--scrape-timeout",
        seconds(0.1, 300),
        "timeout for vLLM's /metrics",
    ),
    Option(
        "warmup",
        "WARMUP",
        "--warmup",
        parse_switch,
        "1: a first generation must return before ready (pays JIT and autotuning); 0: off",
    ),
    Option(
        "warmup_timeout",
        "WARMUP_TIMEOUT",
        "--warmup-timeout",
        seconds(1, DAY_S),
        "seconds the warm-up generation may take before it counts as failed",
    ),
    Option(
        "probe_interval",
        "PROBE_INTERVAL",
        "--probe-interval",
        seconds(0.5, DAY_S),
        "seconds with no request completed (and none running) before a one-token probe",
    ),
    Option(
        "probe_timeout",
        "PROBE_TIMEOUT",
        "--probe-timeout",
        seconds(1, 3600),
        "seconds a probe may take before it counts as failed",
    ),
    Option(
        "launcher",
        "LAUNCHER",
        "--launcher",
        parse_switch,
        "1: the engine is started by `spark-serve launch` (its state file gives the phase); "
        "0: by something else, e.g. a Helm chart: judge the engine alone, never end it",
    ),
    Option(
        "heal",
        "HEAL",
        "--heal",
        parse_switch,
        "1: end a hung engine (SIGTERM, then SIGKILL) so its restart policy brings it back; 0: off",
    ),
    Option(
        "heal_after",
        "HEAL_AFTER",
        "--heal-after",
        count(1, 100),
        "failed warm-ups or probes in a row that make the engine hung",
    ),
    Option(
        "heal_backoff_s",
        "HEAL_BACKOFF_S",
        "--heal-backoff-s",
        seconds(1, DAY_S),
        "least seconds between heals, doubled while healed engines never got ready (at most 1800)",
    ),
)


@dataclass(frozen=True)
class SidecarSettings:
    sidecar_host: str
    sidecar_port: int
    vllm_url: str
    state_dir: str
    api_key: str | None
    ready_window: float
    poll_interval: float
    scrape_timeout: float
    warmup: bool
    warmup_timeout: float
    probe_interval: float
    probe_timeout: float
    launcher: bool
    heal: bool
    heal_after: int
    heal_backoff_s: float


def load_settings(env: Mapping[str, str], cli: Mapping[str, str | None]) -> SidecarSettings:
    values: dict[str, object] = {
        "sidecar_host": "0.0.0.0",
        "sidecar_port": 8001,
        "vllm_url": f"http://127.0.0.1:{env.get('PORT') or 8000}",
        "state_dir": default_state_dir(env),
        "api_key": None,
        "ready_window": 60.0,
        "poll_interval": 1.0,
        "scrape_timeout": 3.0,
        "warmup": True,
        "warmup_timeout": 600.0,
        "probe_interval": 60.0,
        "probe_timeout": 30.0,
        "launcher": True,
        "heal": True,
        "heal_after": 3,
        "heal_backoff_s": 60.0,
    }
    for option in SIDECAR_OPTIONS:
        raw = read_raw(option, env, cli)
        if raw is not None:
            values[option.name] = parse_option(option, raw[0], raw[2])
    return SidecarSettings(**values)  # type: ignore[arg-type]

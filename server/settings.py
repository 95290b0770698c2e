"""Sidecar settings, declared once like the launcher's options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from entrypoint.plan.options import Option, OptionValueError, parse_port, parse_seconds, parse_text
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
        "API key vLLM requires on /v1 (used for /v1/models)",
        secret=True,
    ),
    Option(
        "ready_window",
        "READY_PROGRESS_WINDOW",
        "--ready-window",
        parse_seconds,
        "seconds without token progress, while requests run, before not ready",
    ),
    Option(
        "poll_interval",
        "READY_POLL_INTERVAL",
        "--poll-interval",
        parse_seconds,
        "seconds between engine checks",
    ),
    Option(
        "scrape_timeout", "SCRAPE_TIMEOUT", "--scrape-timeout", parse_seconds, "timeout for vLLM's /metrics"
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
    }
    for option in SIDECAR_OPTIONS:
        raw = read_raw(option, env, cli)
        if raw is not None:
            values[option.name] = parse_option(option, raw[0], raw[2])
    return SidecarSettings(**values)  # type: ignore[arg-type]

"""Every user-facing option, declared once.

Each :class:`Option` names its setting, environment variable, CLI flag, type
and help. The CLI flags (``spark-serve plan/launch``) and the environment
reading are both derived from this table; engine options are validated with
the same pydantic field types as the profile schema.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..errors import SettingError
from ..shipped import configs
from .profile import VllmOptions
from .redact import SECRET_ENV_NAMES

Parser = Callable[[str], Any]


class OptionValueError(ValueError):
    """Raised by a parser with a human fix; the caller adds the source."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


def _engine_field(name: str, what: str, example: str) -> Parser:
    """The profile schema's own field type, built on first use (not at import)."""
    adapters: list[TypeAdapter[Any]] = []

    def parse(raw: str) -> Any:
        if not adapters:
            adapters.append(TypeAdapter(VllmOptions.model_fields[name].annotation))  # type: ignore[arg-type]
        try:
            return adapters[0].validate_python(raw, strict=False)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            expected = first.get("ctx", {}).get("expected")
            if first["type"] in _RANGE_ERRORS:
                bound = str(first["msg"]).removeprefix("Input should be ")
                raise OptionValueError(f"{raw!r} is out of range", f"use {what} {bound}") from err
            fix = f"use one of {expected}" if expected else f"use {what}, e.g. {example}"
            raise OptionValueError(f"invalid value {raw!r}: {first['msg']}", fix) from err

    return parse


def parse_text(raw: str) -> str:
    return raw


def parse_port(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as err:
        raise OptionValueError(f"invalid port {raw!r}", "use a number from 1 to 65535") from err
    if not 1 <= value <= 65535:
        raise OptionValueError(f"port {value} is out of range", "use a number from 1 to 65535")
    return value


@dataclass(frozen=True)
class Number:
    """A number parser with its range declared: ``low <= value <= high`` (``low``
    excluded when ``above``). ``inf``, ``nan`` and anything outside are refused."""

    convert: Callable[[str], float | int]
    unit: str  # "seconds", "GB", "" ...
    low: float
    high: float
    above: bool = False  # low itself is out of range

    @property
    def whole(self) -> bool:
        return self.convert is int

    def describe(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        kind = "a whole number" if self.whole else "a number"
        edge = "above" if self.above else "from"
        return f"{kind} {edge} {self.low:g} to {self.high:g}{unit}"

    def __call__(self, raw: str) -> Any:
        fix = f"use {self.describe()}"
        try:
            value = self.convert(raw.strip())
        except (ValueError, OverflowError) as err:
            raise OptionValueError(f"invalid number {raw!r}", fix) from err
        if not math.isfinite(value):
            raise OptionValueError(f"{raw.strip()} is not a finite number", fix)
        below = value <= self.low if self.above else value < self.low
        if below or value > self.high:
            raise OptionValueError(f"{value:g} is out of range", fix)
        return value


DAY_S = 86400.0


def seconds(low: float, high: float, *, above: bool = False) -> Number:
    return Number(float, "seconds", low, high, above)


def count(low: int, high: int) -> Number:
    return Number(int, "", low, high)


_SWITCH = {"1": True, "true": True, "on": True, "yes": True}
_SWITCH.update(dict.fromkeys(("0", "false", "off", "no"), False))


def parse_switch(raw: str) -> bool:
    value = _SWITCH.get(raw.strip().lower())
    if value is None:
        raise OptionValueError(f"invalid switch {raw!r}", "use 1 to turn it on or 0 to turn it off")
    return value


def parse_parallel(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("tensor", "pipeline"):
        raise OptionValueError(f"invalid parallelism {raw!r}", "use tensor or pipeline")
    return value


def _args(raw: str) -> list[str]:
    try:
        return shlex.split(raw)
    except ValueError as err:
        raise OptionValueError(f"cannot split {raw!r} like a shell: {err}", "balance the quotes") from err


def _engine_command(raw: str) -> list[str]:
    words = _args(raw)
    if "{model}" not in words:
        raise OptionValueError(
            f"{raw!r} has no {{model}} placeholder",
            "write where the model goes, e.g. 'vllm serve {model}'",
        )
    return words


@dataclass(frozen=True)
class Option:
    """One setting: its name, variable, flag, parser (type and range), help and
    default (a value, or a function of the environment; None: unset, vLLM's own)."""

    name: str
    env: str | None
    flag: str | None
    parse: Parser
    help: str
    secret: bool = False
    default: Any = None
    default_from: Callable[[Mapping[str, str]], Any] | None = None
    shown_default: str | None = None  # the docs' default where it is not one value ("profile's")

    def default_for(self, env: Mapping[str, str]) -> Any:
        if self.default_from is not None:
            return self.default_from(env)
        return list(self.default) if isinstance(self.default, tuple) else self.default  # a fresh list


def read_raw(option: Option, env: Mapping[str, str], cli: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The highest-precedence raw value of an option: (value, source, origin)."""
    cli_value = cli.get(option.name)
    if cli_value not in (None, "") and option.flag:
        return str(cli_value), "cli", option.flag
    env_value = env.get(option.env) if option.env else None
    if env_value not in (None, "") and option.env:
        return str(env_value), "env", option.env
    return None


def parse_option(option: Option, raw: str, origin: str) -> Any:
    """Parse a raw value; a bad one becomes a SettingError naming the variable or flag."""
    try:
        return option.parse(raw)
    except OptionValueError as err:
        what = "environment variable" if origin == option.env else "flag"
        raise SettingError(f"{what} {origin}", err.detail, err.fix) from err


def option_value(option: Option, env: Mapping[str, str], cli: Mapping[str, Any]) -> Any:
    """The option's value: the flag, else the variable, else its default."""
    raw = read_raw(option, env, cli)
    return parse_option(option, raw[0], raw[2]) if raw is not None else option.default_for(env)


def default_state_dir(env: Mapping[str, str]) -> str:
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME", "/tmp")) / ".local" / "state")
    return str(Path(base) / "spark-serve")


def _profiles_dir(env: Mapping[str, str]) -> str:
    return str(configs("profiles"))


def _engine(
    name: str, env: str, help: str, what: str = "a valid value", example: str = "", shown: str = "profile's"
) -> Option:
    flag = "--" + name.replace("_", "-")
    return Option(name, env, flag, _engine_field(name, what, example), help, shown_default=shown)


OPTIONS: tuple[Option, ...] = (
    Option(
        "model",
        "MODEL",
        "--model",
        parse_text,
        "profile name, Hub repo id or local checkpoint path",
        shown_default="`qwen3-4b-nvfp4`",
    ),
    Option(
        "models",
        "MODELS",
        "--models",
        parse_text,
        "several models on one device: comma-separated names (as MODEL, or PROFILE:VARIANT) or a stack file",
        shown_default="unset: MODEL alone",
    ),
    Option("profile", "PROFILE", "--profile", parse_text, "profile name; MODEL then names the checkpoint"),
    Option(
        "variant",
        "VARIANT",
        "--variant",
        parse_text,
        "named variant of the profile",
        shown_default="profile's `default_variant`",
    ),
    Option(
        "revision",
        "MODEL_REVISION",
        "--revision",
        parse_text,
        "Hub revision: branch, tag or commit",
        default="main",
        shown_default="profile's, else `main`",
    ),
    Option(
        "served_model_name",
        "SERVED_MODEL_NAME",
        "--served-model-name",
        parse_text,
        "name clients send as `model`",
        shown_default="profile's",
    ),
    _engine(
        "max_model_len", "MAX_MODEL_LEN", "context length in tokens", "a whole number of tokens", "32768"
    ),
    _engine(
        "gpu_memory_utilization",
        "GPU_MEMORY_UTILIZATION",
        "fraction of GPU memory vLLM may use",
        "a fraction above 0 and at most 1",
        "0.85",
    ),
    _engine("max_num_seqs", "MAX_NUM_SEQS", "concurrent sequences", "a whole number of sequences", "64"),
    _engine(
        "max_num_batched_tokens",
        "MAX_NUM_BATCHED_TOKENS",
        "tokens per engine step (at least 2096 on hybrid models)",
        "a whole number of tokens",
        "8192",
    ),
    _engine(
        "long_prefill_token_threshold",
        "LONG_PREFILL_TOKEN_THRESHOLD",
        "tokens one long prefill may take of a step while others wait (so short requests and the "
        "sidecar's confirmations get through)",
        "a whole number of tokens",
        "7680",
        "planned: the step budget less 1/16 of it (at least 128), when `MAX_MODEL_LEN` is longer",
    ),
    _engine("kv_cache_dtype", "KV_CACHE_DTYPE", "KV cache dtype: auto, fp8, ..."),
    _engine(
        "shutdown_timeout",
        "SHUTDOWN_TIMEOUT",
        "seconds vLLM drains in-flight requests on SIGTERM",
        "a whole number of seconds",
        "30",
    ),
    _engine(
        "kv_cache_memory_bytes",
        "KV_CACHE_MEMORY_BYTES",
        "bytes of KV cache",
        "a whole number of bytes",
        "17179869184",
        "planner's on unified memory, else vLLM's",
    ),
    Option(
        "hardware",
        "HARDWARE",
        "--hardware",
        parse_text,
        "plan for this hardware (configs/hardware.yaml) instead of detecting it",
        shown_default="detected",
    ),
    Option(
        "memory_reserve_gb",
        "MEMORY_RESERVE_GB",
        "--memory-reserve-gb",
        Number(float, "GB", 0, 1024),
        "unified memory left to the OS, Docker and the sidecar, in GB",
        shown_default="hardware table's (8 on GB10)",
    ),
    Option(
        "memory_wait_s",
        "MEMORY_WAIT_S",
        "--memory-wait-s",
        seconds(0, DAY_S),
        "seconds to wait for the planned memory before starting, then halt (0: do not check)",
        default=600.0,
    ),
    Option(
        "restart_limit",
        "RESTART_LIMIT",
        "--restart-limit",
        count(0, 1000),
        "engine starts in a row that fail before ready, after which the launcher halts (0: no back-off)",
        default=5,
    ),
    Option(
        "restart_backoff_s",
        "RESTART_BACKOFF_S",
        "--restart-backoff-s",
        seconds(0.1, 3600),
        "delay before the start after a failed one, doubled for each further failure (at most 300)",
        default=15.0,
    ),
    Option(
        "api_key",
        "API_KEY",
        None,
        parse_text,
        "key on every route but /health, /ping, /metrics; reaches vLLM as VLLM_API_KEY, never argv",
        secret=True,
    ),
    Option(
        "hf_token",
        "HF_TOKEN",
        None,
        parse_text,
        "Hugging Face token for gated repos; never logged",
        secret=True,
    ),
    Option("host", "HOST", "--host", parse_text, "address the API binds", default="0.0.0.0"),
    Option("port", "PORT", "--port", parse_port, "port the API listens on", default=8000),
    Option(
        "engine_port",
        "ENGINE_PORT",
        "--engine-port",
        parse_port,
        "with MODELS: the first engine's port, on HOST and not published (the next ones follow; the router's "
        "metrics take it + 8 on 127.0.0.1); the router takes PORT",
        default=8100,
    ),
    Option(
        "vllm_extra_args",
        "VLLM_EXTRA_ARGS",
        "--vllm-extra-args",
        _args,
        "extra vLLM arguments, split like a shell, appended last",
        default=(),
    ),
    Option(
        "router_command",
        "ROUTER_COMMAND",
        "--router-command",
        _args,
        "with MODELS: the router's command, split like a shell (vLLM's router in multi-model mode)",
        default=("vllm-router",),
    ),
    Option(
        "engine_command",
        "ENGINE_COMMAND",
        "--engine-command",
        _engine_command,
        "engine command with a {model} placeholder",
        default=("vllm", "serve", "{model}"),
    ),
    Option(
        "profiles_dir",
        "PROFILES_DIR",
        "--profiles-dir",
        parse_text,
        "profile directories, ':'-separated, later ones win",
        default_from=_profiles_dir,
        shown_default="the shipped `configs/profiles`",
    ),
    Option(
        "state_dir",
        "STATE_DIR",
        "--state-dir",
        parse_text,
        "where launcher.json is written",
        default_from=default_state_dir,
        shown_default="`~/.local/state/spark-serve`",
    ),
    Option(
        "cluster_nodes",
        "CLUSTER_NODES",
        "--cluster-nodes",
        count(1, 64),
        "Sparks serving this model together on Ray, head included (1: no cluster)",
        default=1,
        shown_default="`1` (`2` in the `head`/`worker` services)",
    ),
    Option(
        "cluster_head",
        "CLUSTER_HEAD",
        "--cluster-head",
        parse_text,
        "the head's CX-7 address (on the head: its own)",
    ),
    Option(
        "cluster_interface",
        "CLUSTER_INTERFACE",
        "--cluster-interface",
        parse_text,
        "the fabric interface",
        shown_default="the one fabric port on `CLUSTER_HEAD`'s subnet",
    ),
    Option(
        "cluster_port",
        "CLUSTER_PORT",
        "--cluster-port",
        Number(int, "", 1024, 65535 - 107),
        "Ray's port on the head; Ray's other ports are pinned to the 107 after it",
        default=6379,
    ),
    Option(
        "cluster_token_file",
        "CLUSTER_TOKEN_FILE",
        "--cluster-token-file",
        parse_text,
        "file holding the Ray cluster's token, the same on every node (`spark-serve cluster-token`)",
        default="/run/secrets/ray_token",
    ),
    Option(
        "cluster_parallel",
        "CLUSTER_PARALLEL",
        "--cluster-parallel",
        parse_parallel,
        "how the engine spans the Sparks: tensor or pipeline",
        default="tensor",
        shown_default="profile's `cluster.parallel`, else `tensor`",
    ),
    Option(
        "cluster_join_timeout_s",
        "CLUSTER_JOIN_TIMEOUT_S",
        "--cluster-join-timeout-s",
        seconds(1, DAY_S),
        "seconds the head waits for every worker to join with a verified checkpoint",
        default=900.0,
    ),
    Option(
        "progress_interval",
        "PROGRESS_INTERVAL",
        "--progress-interval",
        seconds(0.1, 3600),
        "seconds between download progress lines",
        default=5.0,
    ),
)

BY_NAME: dict[str, Option] = {opt.name: opt for opt in OPTIONS}
SECRET_ENV: frozenset[str] = SECRET_ENV_NAMES | {o.env for o in OPTIONS if o.secret and o.env}

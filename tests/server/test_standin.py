"""The sidecar's warm-up, idle probe and heal against a stand-in for a hung vLLM
(tests/support/hung_engine.py: /health 200 and the model listed, generations
that never finish). The real engine's side is in tests/test_heal_engine.py."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from entrypoint.state import HEALS_FILE, READY_FILE, read_document, start_ticks, write_state
from tests.conftest import clean_env
from tests.support.engine import free_port
from tests.support.hung_engine import StandIn, stand_in
from tests.support.sidecar import get, sidecar, status, until

MODEL = "m"
FAST = {
    "READY_POLL_INTERVAL": "0.2",
    "WARMUP_TIMEOUT": "1",
    "PROBE_INTERVAL": "0.5",
    "PROBE_TIMEOUT": "1",
    "HEAL_AFTER": "2",
}


def launched_state(state_dir: Path, engine: StandIn, **extra: Any) -> None:
    """What the launcher writes once it has exec'd the engine."""
    write_state(
        state_dir,
        {
            "phase": "starting",
            "start_id": "s1",
            "started_at": time.time(),
            "pid": engine.proc.pid,
            "pid_start_ticks": start_ticks(engine.proc.pid),
            "argv": psutil.Process(engine.proc.pid).cmdline(),
            "served_model_name": MODEL,
            "shutdown_timeout": 0,
            **extra,
        },
    )


@contextmanager
def watched(
    tmp: Path,
    *,
    hung: bool,
    no_chat_template: bool = False,
    state: dict[str, Any] | None = None,
    **settings: str,
) -> Iterator[tuple[StandIn, str]]:
    """The stand-in, the launcher's state naming it, and the sidecar watching both."""
    with stand_in(tmp / "engine", free_port(), MODEL, hung=hung, no_chat_template=no_chat_template) as engine:
        launched_state(tmp / "state", engine, **(state or {}))
        env = clean_env(STATE_DIR=str(tmp / "state"), VLLM_URL=engine.url, SIDECAR_PORT=str(free_port()))
        with sidecar({**env, **FAST, **settings}, tmp / "sidecar.log") as url:
            yield engine, url


def test_a_hung_engine_is_never_ready_and_is_ended_after_heal_after_failures(tmp_path: Path) -> None:
    with watched(tmp_path, hung=True) as (engine, url):
        answers: list[tuple[int, str]] = []
        deadline = time.monotonic() + 30
        while engine.proc.poll() is None and time.monotonic() < deadline:
            code, body = get(url + "/health/ready")
            answers.append((code, json.loads(body)["reason"]))
            time.sleep(0.1)
        assert engine.proc.returncode == 0 and engine.signals.read_text() == "SIGTERM\n"
        assert {code for code, _ in answers} == {503}
        reasons = [reason for _, reason in answers]
        assert any(r.startswith("warming up: the first generation has run for") for r in reasons)
        assert "warm-up failed: no answer in 1s; next warm-up within 0.5s" in reasons
        until(lambda: status(url)["checks"]["heal"]["recent"][0]["exited"] is True, 10, "exit recorded")
        heal = status(url)["checks"]["heal"]
        metrics = get(url + "/metrics")[1].decode()
    assert heal["total"] == 1 and heal["enabled"] is True
    (done,) = heal["recent"]
    assert done["pid"] == engine.proc.pid and done["start_id"] == "s1" and done["signal"] == "SIGTERM"
    assert done["was_ready"] is False
    assert done["reason"] == "2 warm-ups in a row failed (HEAL_AFTER 2); last: no answer in 1s"
    # Exactly HEAL_AFTER warm-ups reached the engine, each told apart from user traffic.
    sent = engine.generations()
    assert len(sent) == 2
    for request in sent:
        assert request["path"] == "/v1/chat/completions" and request["model"] == MODEL
        assert request["request_id"].startswith("spark-serve-warmup-") and request["max_tokens"] == 16
        assert request["user_agent"].startswith("spark-serve-sidecar/")
    assert "sparkserve_heals_total 1.0" in metrics
    assert 'sparkserve_probe_failures_total{kind="warmup"} 2.0' in metrics
    assert records_on_disk(tmp_path) == [done]
    assert read_document(tmp_path / "state", READY_FILE) is None  # never ready: no back-off reset


def records_on_disk(tmp: Path) -> list[dict[str, Any]]:
    return list(read_document(tmp / "state", HEALS_FILE) or [])


def test_with_heal_off_a_hung_engine_is_left_alone_and_reported(tmp_path: Path) -> None:
    with watched(tmp_path, hung=True, HEAL="0") as (engine, url):
        until(lambda: status(url)["checks"]["probe"]["failures_in_row"] >= 4, 30, "4 failed warm-ups")
        checks = status(url)["checks"]
        code, body = get(url + "/health/engine")
        metrics = get(url + "/metrics")[1].decode()
        assert engine.proc.poll() is None and not engine.signals.exists()
    assert checks["heal"]["total"] == 0 and checks["heal"]["blocked"] == "HEAL=0: the engine is left as it is"
    pattern = r"\d+ warm-ups in a row failed \(HEAL_AFTER 2\); last: no answer in 1s"
    assert re.fullmatch(pattern, checks["hung"])
    assert code == 503 and json.loads(body)["hung"] is True
    assert "sparkserve_engine_hung 1.0" in metrics and "sparkserve_heals_total 0.0" in metrics
    assert records_on_disk(tmp_path) == []


def test_a_pid_that_is_not_the_engine_is_never_signalled(tmp_path: Path) -> None:
    with watched(tmp_path, hung=True, state={"pid_start_ticks": 1}) as (engine, url):
        until(lambda: status(url)["checks"]["probe"]["failures_in_row"] >= 3, 30, "3 failed warm-ups")
        heal = status(url)["checks"]["heal"]
        assert engine.proc.poll() is None and not engine.signals.exists()
    assert heal["total"] == 0 and heal["blocked"].startswith(f"engine PID {engine.proc.pid} not found")


def test_a_failed_idle_probe_turns_ready_off_and_the_next_success_on(tmp_path: Path) -> None:
    mtp = {"speculative_tokens": 5}
    with watched(tmp_path, hung=False, no_chat_template=True, state=mtp, HEAL_AFTER="100") as (engine, url):
        until(lambda: get(url + "/health/ready")[0] == 200, 20, "ready")
        until(lambda: status(url)["checks"]["probe"]["sent"] >= 2, 10, "two idle probes")
        engine.hang_file.touch()
        until(lambda: get(url + "/health/ready")[0] == 503, 10, "not ready on a failed probe")
        reason = json.loads(get(url + "/health/ready")[1])["reason"]
        engine.hang_file.unlink()
        until(lambda: get(url + "/health/ready")[0] == 200, 10, "ready again")
        checks = status(url)["checks"]
    assert reason == "idle probe failed: no answer in 1s"
    assert checks["probe"]["failed"] >= 1 and checks["heal"]["total"] == 0
    assert checks["warmup"]["last"]["ok"] and checks["warmup"]["last"]["tokens"] == 24  # MTP: 4 draft rounds
    sent = engine.generations()
    # No chat template: the warm-up falls back to a completion, and probes go there at once.
    assert [r["path"] for r in sent[:3]] == ["/v1/chat/completions", "/v1/completions", "/v1/completions"]
    assert sent[0]["request_id"].startswith("spark-serve-warmup-") and sent[0]["max_tokens"] == 24
    probes = sent[2:]
    assert all(r["request_id"].startswith("spark-serve-probe-") and r["max_tokens"] == 1 for r in probes)

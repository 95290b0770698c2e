"""End to end: any checkpoint on the Hub that no profile names is served by the real
vLLM engine (CPU build) with a profile derived from the checkpoint alone."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from entrypoint.engine.keyguard import OPEN_PATHS
from tests.support.downloads import hub_env
from tests.support.engine import ONE_PROCESS_ENGINE, ONE_PROCESS_ENGINE_ENV, free_port, http_json, launched
from tests.support.hub import Hub
from tests.test_engine import DETECTED, assert_kv_capacity_matches_the_plan, chat

pytestmark = pytest.mark.engine

# format → extra env: no profile at all, MODEL=<repo on the local Hub>, everything derived
DERIVED: dict[str, dict[str, str]] = {
    "ct-nvfp4": {},
    "ct-nvfp4a16": {"VARIANT": "tools"},
    "modelopt-nvfp4": {},
    "modelopt-w4a16-nvfp4": {},
    "bf16": {"API_KEY": "test-key", "SERVED_MODEL_NAME": "tiny"},
}


def _status(url: str, method: str, headers: dict[str, str] | None = None, body: Any = None) -> int:
    sends = method in ("POST", "PUT", "PATCH")
    data = json.dumps(body if body is not None else {}).encode() if sends else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def assert_every_route_needs_the_key(url: str, served: str, headers: dict[str, str]) -> None:
    """Every route vLLM 0.32 mounts (its own OpenAPI document lists them) answers 401 without
    the key, but liveness and metrics; /invocations, which vLLM's own check leaves open,
    generates only with it."""
    spec = http_json(url + "/openapi.json", headers=headers)
    routes = [(m.upper(), p) for p, methods in spec["paths"].items() for m in methods]
    assert ("POST", "/invocations") in routes and len(routes) > 20
    refused, answered = [], []
    for method, path in routes:
        code = _status(url + re.sub(r"\{[^}]+\}", "x", path), method)
        (answered if path in OPEN_PATHS else refused).append((method, path, code))
    assert [r for r in refused if r[2] != 401] == [], "routes that answered without the key"
    assert answered and all(code != 401 for *_, code in answered)
    for path in ("/openapi.json", "/docs", "/metrics", "/health"):
        assert (_status(url + path, "GET") == 401) is (path not in OPEN_PATHS), path
    body = {"model": served, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert _status(url + "/invocations", "POST", body=body) == 401
    assert _status(url + "/invocations", "POST", headers, body) == 200
    assert _status(url + "/v1/models", "GET", {"authorization": "Bearer wrong"}) == 401


@pytest.mark.parametrize("fmt", list(DERIVED))
def test_any_checkpoint_on_the_hub_serves_with_no_profile(
    fmt: str, checkpoint_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    extra = DERIVED[fmt]
    repo = f"test/Tiny-{fmt}"
    port = free_port()
    with Hub() as hub:
        hub.add_dir(repo, checkpoint_factory(fmt))
        env = hub_env(
            hub.url,
            tmp_path,
            MODEL=repo,
            PORT=str(port),
            HOST="127.0.0.1",
            MAX_NUM_SEQS="4",
            ENGINE_COMMAND=ONE_PROCESS_ENGINE,
            **ONE_PROCESS_ENGINE_ENV,
            **extra,
        )
        served = extra.get("SERVED_MODEL_NAME", f"Tiny-{fmt}")
        headers = {"authorization": "Bearer test-key"} if "API_KEY" in extra else {}
        with launched(env, tmp_path / "engine.log") as engine:
            state = json.loads((tmp_path / "state" / "launcher.json").read_text())
            assert state["profile"] == f"tiny-{fmt}" and state["derived_from"].startswith(f"Hub {repo}@")
            argv = state["argv"]
            assert argv[argv.index("--max-model-len") + 1] == "4096"  # the checkpoint's own maximum
            assert "--quantization" not in argv
            models = http_json(engine.url + "/v1/models", headers=headers)
            assert [m["id"] for m in models["data"]] == [served]
            assert chat(engine, served, headers)
            log = engine.log_text()
            assert DETECTED[fmt[:2]] in log
            assert f"profile 'tiny-{fmt}' derived from Hub {repo}@" in log
            assert_kv_capacity_matches_the_plan(state, log)
            if "VARIANT" in extra:  # the derived tools variant: llama's JSON tool parser
                assert "--enable-auto-tool-choice" in argv
                assert argv[argv.index("--tool-call-parser") + 1] == "llama3_json"
            if "API_KEY" in extra:
                with pytest.raises(urllib.error.HTTPError) as denied:
                    http_json(engine.url + "/v1/models")
                assert denied.value.code == 401
                assert "test-key" not in log and "test-key" not in " ".join(argv)
                assert_every_route_needs_the_key(engine.url, served, headers)
                written = [
                    p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file()
                ]
                metrics = urllib.request.urlopen(engine.url + "/metrics", timeout=30).read().decode()
                assert written and not any("test-key" in text for text in [*written, metrics])

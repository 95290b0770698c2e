"""``spark-serve bench`` end to end against the real CPU engine (the numbers mean
nothing on CPU; what is checked is that they are measured and reported right).
The sidecar runs in-process so it can read a GB10's NVML stand-in (power, temperature)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from statistics import fmean
from typing import Any

import pytest
import uvicorn

from entrypoint.errors import ExitCode
from server.app import create_app
from server.gpu import Nvml
from server.settings import load_settings
from tests.conftest import CliResult, clean_env, run_cli
from tests.support.engine import Engine, free_port, launched, tiny_engine_env
from tests.support.nvml import FakeNvml

pytestmark = pytest.mark.engine
SUITE = ["--pp", "32", "--tg", "24", "--depth", "0", "64", "--concurrency", "1", "2", "--runs", "2"]


@pytest.fixture(scope="module")
def engine(
    checkpoint_factory: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    tmp = tmp_path_factory.mktemp("bench")
    env = tiny_engine_env(tmp / "state", checkpoint_factory("bf16"), API_KEY="k")
    with launched(env, tmp / "engine.log") as running:
        yield running


@pytest.fixture(scope="module")
def sidecar_url(engine: Engine) -> Iterator[str]:
    """The real sidecar app, in-process, reading a GB10's NVML stand-in."""
    port = free_port()
    env = {"VLLM_URL": engine.url, "STATE_DIR": str(engine.log.parent / "state"), "API_KEY": "k"}
    settings = load_settings({**env, "SIDECAR_PORT": str(port), "SIDECAR_HOST": "127.0.0.1"}, {})
    nvml = Nvml(lambda: FakeNvml("NVIDIA GB10", memory_supported=False), memory=lambda: (1e9, 2e9))
    server = uvicorn.Server(uvicorn.Config(create_app(settings, nvml), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "sidecar did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def bench(engine: Engine, out: Path, *args: str, key: str = "k", sidecar: str | None = None) -> CliResult:
    sidecar = sidecar or f"http://127.0.0.1:{free_port()}"  # nothing listens: no sidecar
    argv = ["bench", "--url", engine.url, "--sidecar-url", sidecar, "--out", str(out), *args]
    state = str(engine.log.parent / "state")  # the launcher's state on this machine names the snapshot
    return run_cli(argv, clean_env(API_KEY=key, HOME=str(out.parent / "home"), STATE_DIR=state), timeout=600)


def cells(markdown: str) -> list[dict[str, str]]:
    lines = [x for x in markdown.splitlines() if x.startswith("|")]
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in x.strip("|").split("|")), strict=True)) for x in lines[2:]]


def test_with_the_sidecar_the_table_carries_power_and_equals_the_json(
    engine: Engine, sidecar_url: str, tmp_path: Path
) -> None:
    result = bench(
        engine,
        tmp_path / "a",
        *SUITE,
        "--sample-interval",
        "0.05",
        "--",
        "--skip-coherence",
        sidecar=sidecar_url,
    )
    assert result.code == 0, result.stderr
    out = tmp_path / "a"
    assert (out / "concurrency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((out / "results.json").read_text())
    assert re.findall(r"bench \[(\d)/4\]", result.stderr) == ["1", "2", "3", "4"]  # a line per step
    assert doc["served_model_name"] == "tiny" and doc["vllm_version"] == "0.32.0" and doc["notes"] == []
    assert doc["engine_argv"] and "k" not in doc["benchy_argv"] and doc["llama_benchy_version"] == "0.4.0"
    table = cells((out / "results.md").read_text())
    assert [r["test"] for r in table] == [r["test"] for r in doc["rows"]] and len(table) >= 4
    assert "W mean / peak" in table[0] and "t/s/W" in table[0]
    benchy = {
        (b["prompt_size"], b["context_size"], b["concurrency"]): b for b in doc["llama_benchy"]["benchmarks"]
    }
    for row, shown in zip(doc["rows"], table, strict=True):
        metric = benchy[(row["pp"], row["depth"], row["concurrency"])][f"{row['kind']}_throughput"]
        assert shown["t/s"] == f"{fmean(metric['values']):.2f} ± {metric['std']:.2f}"
        start, end = row["window"]
        watts = [s["power_watts"] for s in doc["samples"] if start <= s["at"] <= end]
        if watts:  # recomputed from the samples in the JSON
            assert shown["W mean / peak"] == f"{fmean(watts):.1f} / {max(watts):.1f}"
            assert shown["t/s/W"] == f"{row['tokens_per_s'] / fmean(watts):.3f}"
    assert any(shown["W mean / peak"] for shown in table)


def test_without_a_sidecar_there_are_no_power_columns_said_once_and_a_comparison(
    engine: Engine, tmp_path: Path
) -> None:
    first = bench(engine, tmp_path / "a", *SUITE, "--", "--skip-coherence")
    second = bench(
        engine,
        tmp_path / "b",
        *SUITE,
        "--compare",
        str(tmp_path / "a" / "results.json"),
        "--",
        "--skip-coherence",
    )
    assert first.code == second.code == 0, first.stderr + second.stderr
    assert first.stderr.count("no sidecar at") == 1
    table = (tmp_path / "a" / "results.md").read_text()
    assert "W mean" not in table and "t/s/W" not in table and "no sidecar at" in table
    compared = cells((tmp_path / "b" / "compare.md").read_text())
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["rows"] for d in "ab")
    # Rows are matched by name: a row either run lacks is left out (llama-benchy drops a row
    # it could not measure; on a loaded 2-core machine two of eight have gone).
    earlier = {r["test"]: r for r in a}
    both = [r for r in b if r["test"] in earlier]
    assert len(both) >= len(b) // 2 and [r["test"] for r in compared] == [r["test"] for r in both]
    for row, new in zip(compared, both, strict=True):
        assert row["B/A"] == f"{new['tokens_per_s'] / earlier[new['test']]['tokens_per_s']:.3f}"


def one_line(result: CliResult, code: ExitCode, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.code == code and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]


def test_bad_input_is_one_line_with_its_own_exit_code(engine: Engine, tmp_path: Path) -> None:
    down = run_cli(
        ["bench", "--url", f"http://127.0.0.1:{free_port()}", "--out", str(tmp_path / "x")], clean_env()
    )
    one_line(down, ExitCode.BENCH_ENDPOINT_DOWN, "--url", "does not answer")
    one_line(bench(engine, tmp_path / "k", key="wrong"), ExitCode.BENCH_UNAUTHORIZED, "API_KEY", "401")
    one_line(
        bench(engine, tmp_path / "m", "--model", "other"), ExitCode.BENCH_MODEL_NOT_SERVED, "'other'", "tiny"
    )
    (tmp_path / "junk.json").write_text("{not json")
    bad = bench(engine, tmp_path / "c", "--compare", str(tmp_path / "junk.json"))
    one_line(bad, ExitCode.BENCH_RESULT_INVALID, "--compare", "junk.json")
    assert not (tmp_path / "k").exists() and not (tmp_path / "m").exists()


def test_the_corpus_is_handed_over_without_a_network(engine: Engine, tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = bench(
        engine,
        tmp_path / "r",
        "--pp",
        "16",
        "--tg",
        "4",
        "--depth",
        "0",
        "--concurrency",
        "1",
        "--runs",
        "1",
        "--",
        "--skip-coherence",
    )
    assert result.code == 0, result.stderr
    log = (tmp_path / "r" / "llama-benchy.log").read_text()
    assert "Loading text from cache" in log and "Downloading" not in log
    cached: Any = list((home / ".cache" / "llama-benchy").glob("*.txt"))
    assert len(cached) == 1 and cached[0].read_text().startswith("OPTICKS")

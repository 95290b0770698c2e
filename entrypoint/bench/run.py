"""``spark-serve bench``: check the endpoint, hand llama-benchy the corpus and the
served model's tokenizer, sample the sidecar while it runs, write the results."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import __version__
from ..plan.options import BY_NAME, option_value
from ..plan.redact import shown_argv
from ..secrets import read_secret_file
from ..state import read_state
from .errors import BenchAuthError, BenchEndpointError, BenchModelError, BenchResultError, BenchToolError
from .keyed import KEY_ENV
from .output import comparison, label, markdown, plot
from .report import measure, rows_from, windows
from .sampler import Sampler

BENCHY_VERSION = "0.4.0"  # the llama-benchy these tables are measured with
CORPUS = Path(__file__).with_name("opticks.txt")
# llama-benchy keeps the book it downloads in ~/.cache/llama-benchy/<md5 of the URL>.txt
# and reads it from there without a request. The URL is .invalid, so nothing
# ever leaves the machine: were the cache not used, the run would fail loudly.
CORPUS_URL = "http://spark-serve.invalid/corpus/newton-opticks-1730.txt"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class Suite:
    pp: tuple[int, ...] = (512, 2048)
    tg: tuple[int, ...] = (128,)
    depth: tuple[int, ...] = (0, 4096, 8192, 16384)
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    runs: int = 3

    def steps(self) -> int:
        return len(self.pp) * len(self.tg) * len(self.depth) * len(self.concurrency)


@dataclass(frozen=True)
class BenchRequest:
    url: str  # the stack's OpenAI endpoint, without /v1
    sidecar_url: str
    api_key: str | None
    model: str | None
    tokenizer: str | None
    out: Path
    suite: Suite = field(default_factory=Suite)
    compare: Path | None = None
    state_dir: str = ""  # this machine's launcher state, for the snapshot without a sidecar
    sample_interval: float = 1.0
    extra: tuple[str, ...] = ()  # more llama-benchy flags, as given after --


def _get(url: str, key: str | None = None, timeout: float = 10) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def served_models(url: str, key: str | None) -> list[str]:
    try:
        code, body = _get(url + "/v1/models", key)
    except OSError as err:
        raise BenchEndpointError(url, str(getattr(err, "reason", err))) from err
    if code in (401, 403):
        raise BenchAuthError(url, code)
    if code != 200:
        raise BenchEndpointError(url, f"HTTP {code} from /v1/models")
    try:
        listing = json.loads(body)
        if isinstance(listing, dict) and isinstance(listing.get("models"), list):  # MODELS: vLLM's router
            return [str(m) for m in listing["models"]]
        return [str(m["id"]) for m in listing["data"]]
    except (ValueError, KeyError, TypeError) as err:
        raise BenchEndpointError(url, "/v1/models is not an OpenAI model list") from err


def sidecar_status(url: str) -> dict[str, Any] | None:
    try:
        code, body = _get(url + "/status", timeout=5)
        status = json.loads(body) if code == 200 else None
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def check_tool() -> None:
    try:
        found = metadata.version("llama-benchy")
    except metadata.PackageNotFoundError:
        raise BenchToolError(
            "not installed", f"pip install llama-benchy=={BENCHY_VERSION} (the image has it)"
        ) from None
    if found != BENCHY_VERSION:
        raise BenchToolError(
            f"{found} is installed, the tables are measured with {BENCHY_VERSION}",
            f"pip install llama-benchy=={BENCHY_VERSION}",
        )


def seed_corpus(home: Path) -> str:
    """Put the shipped text where llama-benchy looks for its book; return the book's URL."""
    cache = home / ".cache" / "llama-benchy" / (hashlib.md5(CORPUS_URL.encode()).hexdigest() + ".txt")
    text = CORPUS.read_text(encoding="utf-8")
    if not cache.is_file() or cache.read_text(encoding="utf-8") != text:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(text, encoding="utf-8")
    return CORPUS_URL


def find_tokenizer(given: str | None, *sources: dict[str, Any] | None) -> str:
    """--tokenizer, else the snapshot the sidecar or this machine's launcher state names."""
    candidates = [given] if given else [(source or {}).get("model_path") for source in sources]
    for path in candidates:
        if path and any(
            (Path(path) / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
        ):
            return str(path)
    where = given or next((c for c in candidates if c), None) or "no sidecar or launcher state to ask"
    raise BenchToolError(
        f"no local tokenizer for the served model ({where})",
        "pass --tokenizer with the checkpoint's local directory (llama-benchy must not download one)",
    )


def benchy_argv(request: BenchRequest, served: str, tokenizer: str, book: str, result: Path) -> list[str]:
    s = request.suite
    argv = [sys.executable, "-m", "entrypoint.bench.keyed", "--base-url", request.url + "/v1"]
    argv += ["--model", served, "--served-model-name", served]
    argv += ["--tokenizer", tokenizer, "--book-url", book, "--runs", str(s.runs), "--exact-tg"]
    for flag, values in (
        ("--pp", s.pp),
        ("--tg", s.tg),
        ("--depth", s.depth),
        ("--concurrency", s.concurrency),
    ):
        argv += [flag, *map(str, values)]
    argv += ["--format", "json", "--save-result", str(result)]
    argv += ["--emit-progress", str(result.with_name("progress.jsonl")), *request.extra]
    return argv


def drive(
    argv: list[str], log: Path, steps: int, say: Callable[[str], None], api_key: str | None = None
) -> None:
    """Run llama-benchy, its output to ``log``, one progress line per step on the terminal; the
    key goes through the environment (:mod:`.keyed`), never on its command line."""
    step = 0
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "VLLM_API_KEY")}
    if api_key:
        env[KEY_ENV] = api_key
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if line.startswith("Running test:"):
                step += 1
                say(f"bench [{step}/{steps}] {line.removeprefix('Running test:').strip()}")
        code = proc.wait()
    if code != 0:
        last = next((x for x in reversed(log.read_text().splitlines()) if x.strip()), "")
        raise BenchToolError(f"exited with {code}: {last[:200]}", f"read {log}")


def load_result(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BenchResultError(str(path), str(getattr(err, "strerror", None) or err)) from err
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise BenchResultError(str(path), "it has no rows")
    return doc


def bench(request: BenchRequest, home: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """The whole run; returns the result document (also written to ``request.out``)."""
    check_tool()
    other = load_result(request.compare) if request.compare else None
    listed = served_models(request.url, request.api_key)
    status = sidecar_status(request.sidecar_url)
    served = (
        request.model or (status or {}).get("served_model_name") or (listed[0] if len(listed) == 1 else "")
    )
    if served not in listed:
        raise BenchModelError(served or "(none given)", listed)
    if isinstance((status or {}).get("models"), dict):  # MODELS: the sidecar's status of this model
        status = status["models"].get(served)  # type: ignore[index]
    notes = []
    if status is None:
        notes.append(f"no sidecar at {request.sidecar_url}: no power, temperature or ceiling columns")
        say(f"note: {notes[-1]}")
    tokenizer = find_tokenizer(request.tokenizer, status, read_state(request.state_dir))
    request.out.mkdir(parents=True, exist_ok=True)
    raw = request.out / "llama-benchy.json"
    argv = benchy_argv(request, served, tokenizer, seed_corpus(home), raw)
    metrics = (request.sidecar_url if status else request.url) + "/metrics"
    started = time.time()
    with Sampler(metrics, request.sample_interval, served) as sampler:
        drive(argv, request.out / "llama-benchy.log", request.suite.steps(), say, request.api_key)
    benchy = json.loads(raw.read_text(encoding="utf-8"))
    progress = (request.out / "progress.jsonl").read_text(encoding="utf-8").splitlines()
    spans = windows(json.loads(line) for line in progress if line.strip())
    memory = (status or {}).get("memory")
    rows = [measure(row, sampler.samples, memory) for row in rows_from(benchy, spans)]
    document = {
        "spark_serve_version": __version__,
        "llama_benchy_version": BENCHY_VERSION,
        "vllm_version": (status or {}).get("vllm_version"),
        "profile": (status or {}).get("profile"),
        "variant": (status or {}).get("variant"),
        "hardware": (memory or {}).get("hardware"),
        "repo": (status or {}).get("repo"),
        "revision": (status or {}).get("revision"),
        "served_model_name": served,
        "engine_argv": (status or {}).get("argv"),
        "benchy_argv": shown_argv(argv),
        "suite": request.suite.__dict__,
        "endpoint": request.url,
        "sidecar": request.sidecar_url if status else None,
        "started_at_utc": datetime.fromtimestamp(started, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds": round(time.time() - started, 1),
        "notes": notes,
        "memory": memory,
        "rows": [row.to_json() for row in rows],
        "samples": [s.to_json() for s in sampler.samples],
        "llama_benchy": benchy,
    }
    (request.out / "results.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    title = f"spark-serve bench: {label(document)}"
    facts = [f"{k}: {document[k]}" for k in ("served_model_name", "repo", "revision") if document[k]]
    facts += notes
    (request.out / "results.md").write_text(markdown(rows, title, facts), encoding="utf-8")
    plot(rows, request.out / "concurrency.png", served)
    if other is not None:
        (request.out / "compare.md").write_text(comparison(document, other), encoding="utf-8")
    return document


def request_from(env: Mapping[str, str], args: Any) -> BenchRequest:
    url = (args.url or f"http://127.0.0.1:{env.get('PORT') or 8000}").rstrip("/")
    sidecar = (args.sidecar_url or f"http://127.0.0.1:{env.get('SIDECAR_PORT') or 8001}").rstrip("/")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else Path(env.get("HOME", "/tmp")) / "spark-serve-bench" / stamp
    suite = Suite(
        pp=tuple(args.pp or Suite.pp),
        tg=tuple(args.tg or Suite.tg),
        depth=tuple(args.depth or Suite.depth),
        concurrency=tuple(args.concurrency or Suite.concurrency),
        runs=args.runs or Suite.runs,
    )
    return BenchRequest(
        url=url,
        sidecar_url=sidecar,
        api_key=(read_secret_file("--api-key-file", args.api_key_file) if args.api_key_file else None)
        or env.get("API_KEY")
        or None,
        model=args.model,
        tokenizer=args.tokenizer,
        out=out,
        suite=suite,
        compare=Path(args.compare) if args.compare else None,
        state_dir=option_value(BY_NAME["state_dir"], env, {}),
        sample_interval=args.sample_interval or 1.0,
        extra=tuple(args.benchy_args or ()),
    )

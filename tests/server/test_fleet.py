"""The sidecar's view of a set: the joint verdict, engine URLs, one merged scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from server.fleet import Families, engine_url, joint_verdict, merged, parse_page
from server.readiness import Verdict

PAGE = """# HELP vllm:num_requests_running Number of requests running.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{name}"}} {value}
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total {value}
"""


def test_ready_only_when_every_model_is_and_the_first_waiting_is_named() -> None:
    up, down = Verdict(True, "ready", "ok"), Verdict(False, "starting", "vLLM /health is not 200")
    assert joint_verdict({"a": up, "b": up}).ready
    waiting = joint_verdict({"a": up, "b": down, "c": down})
    assert not waiting.ready and waiting.phase == "starting"
    assert waiting.reason == "b: vLLM /health is not 200 (and 1 more)"
    assert not joint_verdict({}).ready


def test_an_engines_url_is_the_sidecars_host_with_its_port() -> None:
    assert engine_url("http://vllm:8000", 8101) == "http://vllm:8101"
    assert engine_url("http://127.0.0.1:8000/", 8100) == "http://127.0.0.1:8100"
    assert engine_url("http://[::1]:8000", 8100) == "http://[::1]:8100"


def test_pages_merge_into_one_family_each_with_the_model_on_every_series() -> None:
    pages = [(n, parse_page(PAGE.format(name=n, value=v).encode())) for n, v in (("a", 1), ("b", 2))]
    pages.append(("c", parse_page(b"# TYPE broken gauge\nbroken{ 1\n")))  # a page cut short: left out
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Families(merged(pages, "model_name", only_missing=True)))
    text = generate_latest(registry).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert text.count("# TYPE vllm:num_requests_running gauge") == 1
    running = {s.labels["model_name"]: s.value for s in families["vllm:num_requests_running"].samples}
    assert running == {"a": 1.0, "b": 2.0}
    cpu = {s.labels["model_name"]: s.value for s in families["process_cpu_seconds"].samples}
    assert cpu == {"a": 1.0, "b": 2.0}  # vLLM's unlabelled process series, told apart

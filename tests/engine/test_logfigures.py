"""vLLM 0.32's start lines, as its own source formats them, read back (pure)."""

from __future__ import annotations

import logging

import pytest

from entrypoint.engine.logfigures import GIB, KEPT, read_figures


def vllm_line(fmt: str, *args: object) -> str:
    """A line through vLLM's own formatter, with its process prefix."""
    from vllm.logging_utils import NewLineFormatter

    record = logging.LogRecord("vllm.x", logging.INFO, "gpu_worker.py", 1, fmt, args, None)
    record.vllm_process_name, record.fileinfo = "EngineCore_DP0", "gpu_worker.py"
    formatter = NewLineFormatter(
        "(%(vllm_process_name)s pid=%(process)d) %(levelname)s [%(fileinfo)s:%(lineno)d] %(message)s"
    )
    return formatter.format(record)


def test_the_figures_vllm_logs_at_start_are_read_back() -> None:
    from vllm.utils.mem_utils import format_gib

    weights, graphs = int(4.213 * GIB), int(0.53 * GIB)
    lines = [
        vllm_line("Model loading took %s GiB memory and %.6f seconds", format_gib(weights), 3.1),
        vllm_line("Graph capturing finished in %.0f secs, took %.2f GiB", 5.2, graphs / GIB),
        vllm_line(
            "%s KV cache size: %s tokens, Maximum concurrency for %s tokens per request: %.2fx",
            "GPU",
            f"{1234567:,}",
            f"{32768:,}",
            37.68,
        ),
        "INFO an unrelated line",
    ]
    figures = read_figures(lines)
    assert abs(figures.weights_bytes - weights) <= 0.005 * GIB  # two decimals of GiB
    assert abs(figures.graphs_bytes - graphs) <= 0.005 * GIB
    assert (figures.kv_tokens, figures.max_concurrency) == (1234567, 37.68)
    assert not figures.refused
    assert all(KEPT.search(line) for line in lines[:3]) and not KEPT.search(lines[3])


@pytest.mark.parametrize(
    "message",
    [
        "ValueError: Free memory on device cuda:0 (102.2/121.69 GiB) on startup is less than desired "
        "GPU memory utilization (0.87, 105.87 GiB). Decrease GPU memory utilization or reduce GPU "
        "memory used by other processes.",
        "ValueError: Available memory on node 0 (102.2/121.69 GiB) on startup is less than desired CPU "
        "memory utilization (0.87, 105.87 GiB).",
    ],
)
def test_a_refused_start_says_the_free_memory_at_vllms_check(message: str) -> None:
    figures = read_figures(["Traceback (most recent call last):", message])
    assert figures.refused and KEPT.search(message)
    assert figures.free_at_check_bytes == int(102.2 * GIB)
    assert figures.total_at_check_bytes == int(121.69 * GIB)


def test_nothing_said_is_nothing_read() -> None:
    figures = read_figures(["INFO Started server process", ""])
    assert not figures.said_anything and figures.weights_bytes is None

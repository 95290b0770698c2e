"""The CLI's happy paths, through the real command in a fresh interpreter."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult
from tests.support.configs import seed_config, write_checkpoint

Cli = Callable[..., CliResult]


def test_profiles_lists_every_profile_variant_repo_and_need(cli: Cli) -> None:
    result = cli("profiles")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["PROFILE", "VARIANTS", "REPO"]
    row = next(line for line in lines if line.startswith("axe-strada-28b-nvfp4a16"))
    assert "text-only,multimodal,tools,mtp,long-context" in row
    assert "srswti/axe-strada-28b-nvfp4a16@main" in row and "ct-nvfp4a16" in row and "28 GB" in row


def test_profiles_marks_what_fits_the_named_hardware(cli: Cli) -> None:
    spark = cli("profiles", "--hardware", "gb10")
    assert spark.code == 0, spark.stderr
    assert spark.stdout.splitlines()[0].split()[-2:] == ["FITS", "gb10"]
    assert all(line.split()[7] == "yes" for line in spark.stdout.splitlines()[1:-1])
    small = cli("profiles", HARDWARE="rtx-5090")  # 32 GB: the 28-32 GB profiles do not fit
    rows = {line.split()[0]: line for line in small.stdout.splitlines()[1:-1]}
    assert rows["qwen3-4b-nvfp4"].split()[7] == "yes" and "no (min memory)" in rows["ax-3.1-nvfp4"]
    assert small.stdout.splitlines()[-1].startswith("hardware: rtx-5090")


def test_plan_json_shows_sources_argv_and_redacted_environment(cli: Cli) -> None:
    result = cli(
        "plan",
        "--json",
        "--variant",
        "tools",
        "--max-num-seqs",
        "4",
        API_KEY="hunter2",
        MAX_MODEL_LEN="2048",
        PROFILE="qwen3-4b-nvfp4",
    )
    assert result.code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["profile"] == "qwen3-4b-nvfp4" and doc["variant"] == "tools"
    settings = doc["settings"]
    assert settings["max_num_seqs"] == {"value": 4, "source": "cli", "origin": "--max-num-seqs"}
    assert settings["max_model_len"] == {"value": 2048, "source": "env", "origin": "MAX_MODEL_LEN"}
    assert settings["tool_call_parser"]["source"] == "variant"
    assert settings["api_key"]["value"] == "<redacted>"
    assert shlex.split(doc["command"]) == doc["argv"]
    assert doc["argv"][:3] == ["vllm", "serve", "DrQianXu/Qwen3-4B-nvfp4-Compressible"]
    assert doc["env"] == {"VLLM_API_KEY": "<redacted>", "PYTHONFAULTHANDLER": "1"}
    assert "hunter2" not in result.stdout


def test_plan_text_names_each_source(cli: Cli) -> None:
    result = cli("plan", MAX_NUM_SEQS="9")
    assert result.code == 0
    line = next(ln for ln in result.stdout.splitlines() if ln.strip().startswith("max_num_seqs"))
    assert "9" in line and "[env: MAX_NUM_SEQS]" in line


def test_plan_imports_neither_torch_nor_vllm(cli: Cli) -> None:
    import subprocess
    import sys

    code = (
        "import sys, runpy; sys.argv=['spark-serve','plan'];\n"
        "try: runpy.run_module('entrypoint', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print('HEAVY', [m for m in ('torch', 'vllm', 'transformers') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout


def test_launch_execs_the_engine_command(cli: Cli, tmp_path: Path) -> None:
    ckpt = write_checkpoint(tmp_path / "ckpt", seed_config("llama"))
    marker = tmp_path / "argv.txt"
    # The engine here is a shell that records the argv it was given.
    result = cli("launch", MODEL=str(ckpt), ENGINE_COMMAND=f"sh -c 'echo \"$@\" > {marker}' sh {{model}}")
    assert result.code == 0, result.stderr
    recorded = marker.read_text().split()
    assert recorded[0] == str(ckpt) and "--served-model-name" in recorded and "ckpt" in recorded

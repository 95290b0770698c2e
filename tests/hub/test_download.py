"""First-run download against a local Hub, with the real huggingface_hub client."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.errors import ExitCode
from tests.support.downloads import (
    CHUNK,
    SMALL,
    MiB,
    download,
    files_under,
    hub_env,
    mount_tmpfs,
    start_download,
    state,
    wait_for,
)
from tests.support.hub import Fault, Hub

REPO_ID = "test/big"
WEIGHTS = "model.safetensors"


@pytest.fixture(scope="session")
def big() -> bytes:
    return os.urandom(48 * MiB)  # well above huggingface_hub's 10 MiB write chunk


@pytest.fixture
def hub(big: bytes) -> Iterator[Hub]:
    with Hub() as server:
        server.add_repo(
            REPO_ID,
            {
                **SMALL,
                WEIGHTS: big,
                "original/consolidated.pth": b"x" * 4096,
                "pytorch_model.bin": b"y" * 4096,
                "model.gguf": b"z" * 4096,
            },
        )
        yield server


def env_for(hub: Hub, home: Path, **extra: str) -> dict[str, str]:
    return hub_env(hub.url, home, MODEL=REPO_ID, **extra)


def snapshot_of(result_stdout: str) -> Path:
    return Path(result_stdout.strip().splitlines()[-1])


def test_fresh_download_fetches_only_serving_files_and_reports_progress(
    hub: Hub, tmp_path: Path, big: bytes
) -> None:
    result = download(env_for(hub, tmp_path))
    assert result.code == 0, result.stderr
    snapshot = snapshot_of(result.stdout)
    assert sorted(p.name for p in snapshot.iterdir()) == ["config.json", WEIGHTS, "tokenizer.json"]
    assert (snapshot / WEIGHTS).read_bytes() == big
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("spark-serve: downloading")]
    assert lines and "3/3 files" in lines[-1] and "/s, ETA" in lines[-1]
    assert "\r" not in result.stderr
    doc = state(tmp_path)
    assert (
        doc["download"]["files_done"] == 3 and doc["download"]["bytes_done"] == doc["download"]["bytes_total"]
    )
    # the weights once, plus the memory planner's 8-byte header-length probe (not a safetensors header here)
    assert hub.gets[WEIGHTS] == 1 and hub.bytes_sent[WEIGHTS] == len(big) + 8
    # both through the Hub's 302 to its CDN, another host: small files come from resolve itself
    cdn = [path for _, path in hub.requests if path.startswith("/cdn/")]
    assert cdn and all(path.endswith("/" + WEIGHTS) for path in cdn)


def test_second_start_makes_no_weight_request(hub: Hub, tmp_path: Path) -> None:
    assert download(env_for(hub, tmp_path)).code == 0
    hub.reset_counters()
    result = download(env_for(hub, tmp_path))
    assert result.code == 0, result.stderr
    assert hub.gets[WEIGHTS] == 0 and "downloading" not in result.stderr


def test_offline_start_uses_no_network(hub: Hub, tmp_path: Path) -> None:
    assert download(env_for(hub, tmp_path)).code == 0
    hub.reset_counters()
    result = download(env_for(hub, tmp_path, HF_HUB_OFFLINE="1"))
    assert result.code == 0, result.stderr
    assert hub.requests == []


@pytest.mark.parametrize("kind", ["drop", "truncate"])
def test_connection_lost_mid_file_resumes_in_process(hub: Hub, tmp_path: Path, big: bytes, kind: str) -> None:
    hub.faults.append(Fault(kind, path=WEIGHTS, after=27 * MiB))
    result = download(env_for(hub, tmp_path))
    assert result.code == 0, result.stderr
    assert (snapshot_of(result.stdout) / WEIGHTS).read_bytes() == big
    assert hub.bytes_sent[WEIGHTS] - len(big) <= CHUNK


def test_stall_times_out_and_resumes(hub: Hub, tmp_path: Path, big: bytes) -> None:
    hub.faults.append(Fault("stall", path=WEIGHTS, after=12 * MiB, seconds=6))
    result = download(env_for(hub, tmp_path))
    assert result.code == 0, result.stderr
    assert (snapshot_of(result.stdout) / WEIGHTS).read_bytes() == big


def test_burst_of_server_errors_is_retried(hub: Hub, tmp_path: Path) -> None:
    hub.faults.append(Fault("status", path="/api/models", status=500, times=3))
    result = download(env_for(hub, tmp_path))
    assert result.code == 0, result.stderr
    assert result.stderr.count("retrying in") == 3


def test_persistent_server_errors_end_in_one_line(hub: Hub, tmp_path: Path) -> None:
    hub.faults.append(Fault("status", path="/api/models", status=503, times=99))
    result = download(env_for(hub, tmp_path))
    assert result.code == ExitCode.HUB_UNREACHABLE
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("spark-serve: error: cannot reach the Hub") and "Traceback" not in result.stderr


def test_wrong_bytes_are_detected_and_fetched_again(hub: Hub, tmp_path: Path, big: bytes) -> None:
    hub.faults.append(Fault("corrupt", path=WEIGHTS, after=5 * MiB))
    result = download(env_for(hub, tmp_path))
    assert result.code == 0, result.stderr
    assert "sha256 mismatch; fetching it again" in result.stderr
    assert (snapshot_of(result.stdout) / WEIGHTS).read_bytes() == big
    assert hub.gets[WEIGHTS] == 2


def test_client_errors_are_never_retried(hub: Hub, tmp_path: Path) -> None:
    hub.faults.append(Fault("status", path="/api/models", status=401, times=99))
    result = download(env_for(hub, tmp_path, HF_TOKEN="hf_never_shown_123"))
    assert result.code == ExitCode.HUB_AUTH
    assert "retrying" not in result.stderr
    assert len([r for r in hub.requests if r[1].startswith("/api/models")]) == 1


def test_gated_repo_names_the_token_and_the_licence(hub: Hub, tmp_path: Path, big: bytes) -> None:
    hub.add_repo("gated/model", {**SMALL, WEIGHTS: big[: 2 * MiB]}, gated=True)
    result = download(hub_env(hub.url, tmp_path, MODEL="gated/model"))
    assert result.code == ExitCode.HUB_AUTH
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "HF_TOKEN" in lines[0] and "licence" in lines[0]
    token = "hf_secret_token_value"
    hub.cdn_auth.clear()
    ok = download(hub_env(hub.url, tmp_path, MODEL="gated/model", HF_TOKEN=token))
    assert ok.code == 0, ok.stderr
    assert hub.cdn_auth and not any(hub.cdn_auth)  # the token never reaches the CDN's host
    for text in (ok.stdout, ok.stderr, result.stderr, (tmp_path / "state" / "launcher.json").read_text()):
        assert token not in text


def test_unknown_repo_and_revision(hub: Hub, tmp_path: Path) -> None:
    anonymous = download(hub_env(hub.url, tmp_path, MODEL="nobody/nothing"))
    assert anonymous.code == ExitCode.HUB_AUTH  # the Hub answers 401 to anonymous callers
    authed = download(hub_env(hub.url, tmp_path, MODEL="nobody/nothing", HF_TOKEN="hf_x"))
    assert authed.code == ExitCode.HUB_NOT_FOUND and "repository not found" in authed.stderr
    revision = download(env_for(hub, tmp_path, MODEL_REVISION="v9"))
    assert revision.code == ExitCode.HUB_NOT_FOUND and "MODEL_REVISION" in revision.stderr


def test_hub_unreachable_offers_offline_mode_when_complete(hub: Hub, tmp_path: Path) -> None:
    assert download(env_for(hub, tmp_path)).code == 0
    dead = hub_env("http://127.0.0.1:9", tmp_path, MODEL=REPO_ID)
    result = download(dead)
    assert result.code == ExitCode.HUB_UNREACHABLE
    assert "HF_HUB_OFFLINE=1" in result.stderr.strip().splitlines()[-1]


def test_revision_that_moves_is_followed(hub: Hub, tmp_path: Path, big: bytes) -> None:
    first = snapshot_of(download(env_for(hub, tmp_path)).stdout)
    moved = big[::-1]
    new_commit = hub.add_repo(REPO_ID, {**SMALL, WEIGHTS: moved})
    result = download(env_for(hub, tmp_path))
    assert result.code == 0, result.stderr
    second = snapshot_of(result.stdout)
    assert second.name == new_commit != first.name
    assert (second / WEIGHTS).read_bytes() == moved
    offline = download(env_for(hub, tmp_path, HF_HUB_OFFLINE="1"))
    assert snapshot_of(offline.stdout) == second


def test_killed_download_resumes_and_leaves_no_orphans(hub: Hub, tmp_path: Path, big: bytes) -> None:
    env = env_for(hub, tmp_path)
    hub.faults.append(Fault("stall", path=WEIGHTS, after=27 * MiB, seconds=60))
    proc = start_download(env, tmp_path / "first.log")
    wait_for(lambda: hub.bytes_sent[WEIGHTS] >= 27 * MiB)
    partials = tmp_path / "hf" / "spark-serve" / "partial"
    wait_for(lambda: any(p.stat().st_size >= 20 * MiB for p in partials.glob("*.part")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    blobs = tmp_path / "hf" / "hub" / "models--test--big" / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    # Left by a killed huggingface_hub download of this snapshot's file: pruned.
    orphan = blobs / f"{hashlib.sha256(big).hexdigest()}.1234abcd.incomplete"
    orphan.write_bytes(b"left by a killed huggingface_hub download")
    # Not this snapshot's: another revision's file, another repository's resumable partial. Kept.
    other = blobs / "deadbeef.1234abcd.incomplete"
    other.write_bytes(b"another revision's download")
    elsewhere = partials / ("0" * 64 + ".part")
    elsewhere.write_bytes(b"another repository's resumable download")

    offline = download({**env, "HF_HUB_OFFLINE": "1"})
    assert offline.code in (ExitCode.SNAPSHOT_INCOMPLETE,), offline.stderr
    sent_before = hub.bytes_sent[WEIGHTS]
    result = download(env)
    assert result.code == 0, result.stderr
    resent = sent_before + (hub.bytes_sent[WEIGHTS] - sent_before) - len(big)
    assert resent <= CHUNK, f"re-sent {resent / MiB:.1f} MiB"
    assert (snapshot_of(result.stdout) / WEIGHTS).read_bytes() == big
    assert files_under(partials) == [elsewhere.name] and not orphan.exists() and other.exists()


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    volume = tmp_path / "volume"
    if not mount_tmpfs(volume, 400):
        pytest.skip("needs root to mount a small tmpfs for the disk-full tests")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


def test_too_little_disk_is_refused_before_the_first_byte(hub: Hub, small_volume: Path, big: bytes) -> None:
    hub.add_repo("test/huge", {**SMALL, WEIGHTS: big * 6})  # 288 MiB + margin > 400 MiB volume
    result = download(hub_env(hub.url, small_volume, MODEL="test/huge"))
    assert result.code == ExitCode.DISK_FULL
    line = result.stderr.strip().splitlines()[-1]
    assert "need" in line and "free" in line and "HF_HOME" in line
    assert hub.gets[WEIGHTS] == 0


def test_disk_full_mid_download_keeps_the_partial(hub: Hub, small_volume: Path, big: bytes) -> None:
    env = {**env_for(hub, small_volume), "STATE_DIR": str(small_volume.parent / "state")}
    hub.faults.append(Fault("stall", path=WEIGHTS, after=21 * MiB, seconds=3))
    proc = start_download(env, small_volume.parent / "full.log")
    wait_for(lambda: hub.bytes_sent[WEIGHTS] >= 21 * MiB)
    filler = small_volume / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as handle:  # fill the volume
        while True:
            handle.write(b"\0" * MiB)
    assert proc.wait(120) == ExitCode.DISK_FULL
    log = (small_volume.parent / "full.log").read_text()
    assert "partial files are kept" in log and "Traceback" not in log
    filler.unlink()
    result = download(env)
    assert result.code == 0, result.stderr
    assert (snapshot_of(result.stdout) / WEIGHTS).read_bytes() == big


def test_local_path_needs_no_hub(hub: Hub, tmp_path: Path) -> None:
    from tests.support.configs import seed_config, write_checkpoint

    ckpt = write_checkpoint(tmp_path / "local", seed_config("llama"))
    marker = tmp_path / "ran"
    env = hub_env(hub.url, tmp_path, MODEL=str(ckpt), ENGINE_COMMAND=f"sh -c 'touch {marker}' {{model}}")
    proc = subprocess.run(
        [sys.executable, "-m", "entrypoint", "launch"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert marker.exists() and hub.requests == []

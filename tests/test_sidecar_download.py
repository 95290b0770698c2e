"""Phase and download progress reach /status and /metrics while a download runs."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

from tests.support.downloads import SMALL, MiB, hub_env, start_download, wait_for
from tests.support.engine import free_port
from tests.support.hub import Fault, Hub
from tests.support.sidecar import get, sidecar


def test_download_progress_is_visible_in_status_and_metrics(tmp_path: Path) -> None:
    weights = os.urandom(24 * MiB)
    with Hub() as hub:
        hub.add_repo("test/model", {**SMALL, "model.safetensors": weights})
        hub.faults.append(Fault("stall", path="model.safetensors", after=12 * MiB, seconds=30))
        env = hub_env(
            hub.url,
            tmp_path,
            MODEL="test/model",
            SIDECAR_PORT=str(free_port()),
            PORT=str(free_port()),
            READY_POLL_INTERVAL="0.2",
        )
        with sidecar(env, tmp_path / "sidecar.log") as url:
            proc = start_download(env, tmp_path / "download.log")
            try:

                def downloading() -> bool:
                    status = json.loads(get(url + "/status")[1])
                    return (
                        status["phase"] == "downloading"
                        and (status["download"] or {}).get("bytes_done", 0) > 0
                    )

                wait_for(downloading, timeout=60)
                status = json.loads(get(url + "/status")[1])
                assert status["repo"] == "test/model" and status["download"]["bytes_total"] == len(
                    weights
                ) + sum(len(v) for v in SMALL.values())
                assert get(url + "/health/ready")[0] == 503
                text = get(url + "/metrics")[1].decode()
                assert 'sparkserve_phase{phase="downloading"} 1.0' in text
                total = float(re.search(r"^sparkserve_download_size_bytes (\S+)$", text, re.M)[1])  # type: ignore[index]
                done = float(re.search(r"^sparkserve_download_completed_bytes (\S+)$", text, re.M)[1])  # type: ignore[index]
                assert total == status["download"]["bytes_total"] and 0 < done < total
                assert "sparkserve_vllm_up 0.0" in text
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

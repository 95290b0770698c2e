"""Find the checkpoint directory to serve: a local path, or the Hub snapshot
(downloaded, resumed and verified on first use)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelUnavailableError
from ..plan.resolve import Plan
from .download import OnUpdate, ensure_snapshot
from .hubcalls import DownloadRequest
from .patterns import allow_patterns


def download_request(plan: Plan, *, offline: bool) -> DownloadRequest:
    assert plan.model.repo is not None
    custom = plan.profile.profile.download if plan.profile is not None else None
    return DownloadRequest(
        repo=plan.model.repo,
        revision=plan.value("revision"),
        token=plan.value("hf_token") or None,
        allow=allow_patterns(
            custom.allow_patterns if custom else None,
            multimodal=not plan.value("language_model_only"),
            remote_code=bool(plan.value("trust_remote_code")),
        ),
        ignore=list(custom.ignore_patterns) if custom else [],
        offline=offline,
        interval=float(plan.value("progress_interval")),
    )


def checkpoint_dir(value: str) -> Path:
    """A local checkpoint path that is a directory, else the typed error (plan and launch alike)."""
    path = Path(value)
    try:
        found = path.is_dir()
    except OSError as err:  # ENAMETOOLONG, ELOOP, EACCES ...
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ModelUnavailableError(
            shown,
            f"cannot be read: {err.strerror or err}",
            "give the checkpoint directory's real path (each name at most 255 characters)",
        ) from err
    if not found:
        raise ModelUnavailableError(
            str(path),
            "local path does not exist or is not a directory",
            "mount the checkpoint there or set MODEL to a profile or Hub repo id",
        )
    return path


def locate(plan: Plan, on_update: OnUpdate) -> Path:
    """Return a local, complete checkpoint directory for the plan."""
    if plan.model.path is not None:
        return checkpoint_dir(plan.model.path)
    from huggingface_hub import constants

    return ensure_snapshot(download_request(plan, offline=constants.HF_HUB_OFFLINE), on_update)

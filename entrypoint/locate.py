"""Find the checkpoint directory to serve: a local path or the Hub cache."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelUnavailableError
from .resolve import Plan


def locate(plan: Plan) -> Path:
    """Return a local checkpoint directory for the plan, without network access."""
    if plan.model.path is not None:
        path = Path(plan.model.path)
        if not path.is_dir():
            raise ModelUnavailableError(
                str(path),
                "local path does not exist or is not a directory",
                "mount the checkpoint there or set MODEL to a profile or Hub repo id",
            )
        return path
    repo = plan.model.repo
    assert repo is not None
    revision = plan.value("revision")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except LocalEntryNotFoundError as err:
        raise ModelUnavailableError(
            f"{repo}@{revision}",
            "is not in the Hugging Face cache (HF_HOME)",
            "download it into HF_HOME first, or set MODEL to a local checkpoint directory",
        ) from err

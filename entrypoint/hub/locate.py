"""Find the checkpoint directory to serve: a local path, or the Hub snapshot
(downloaded, resumed and verified on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelUnavailableError
from ..meta import DownloadRequest

if TYPE_CHECKING:
    from .download import OnUpdate


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


def locate(path: str | None, request: DownloadRequest | None, on_update: OnUpdate) -> Path:
    """A local, complete checkpoint directory: ``path`` itself, or the Hub snapshot of ``request``."""
    if path is not None:
        return checkpoint_dir(path)
    from .download import ensure_snapshot  # the download machinery only when it is needed

    assert request is not None
    return ensure_snapshot(request, on_update)

"""Calls to the Hub: the request, error classification and retry policy.

Transient failures (connection errors, timeouts, 5xx, a truncated body) are
retried with exponential backoff; a 4xx never is. Everything else becomes one
of the typed errors in :mod:`entrypoint.errors`.
"""

from __future__ import annotations

import errno
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..errors import DiskFullError, HubAuthError, HubNotFoundError, HubUnreachableError, SparkServeError
from ..meta import DownloadRequest
from .store import hub_cache

T = TypeVar("T")


def existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class _Transient(Exception):
    """A failure worth retrying (connection, timeout, 5xx)."""


def _status(err: BaseException) -> int | None:
    response = getattr(err, "response", None)
    return getattr(response, "status_code", None)


def classify(err: BaseException, req: DownloadRequest) -> BaseException:
    """Map a huggingface_hub / httpx / OS error to a typed error or _Transient."""
    import httpx2
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, SparkServeError):
        return err
    status = _status(err)
    if isinstance(err, GatedRepoError) or status in (401, 403):
        return HubAuthError(req.repo, status)
    if isinstance(err, RevisionNotFoundError):
        return HubNotFoundError(
            req.repo, f"revision '{req.revision}'", "set MODEL_REVISION to an existing branch, tag or commit"
        )
    if isinstance(err, EntryNotFoundError):
        return HubNotFoundError(req.repo, "a listed file", "the repo changed during download; start again")
    if isinstance(err, RepositoryNotFoundError) or status == 404:
        return HubNotFoundError(req.repo, "repository", "check MODEL or the profile's repo (owner/name)")
    if isinstance(err, HfHubHTTPError) and status is not None and status >= 500:
        return _Transient(f"HTTP {status}")
    if isinstance(err, (httpx2.TransportError, httpx2.TimeoutException)):
        return _Transient(type(err).__name__)
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        import shutil

        return DiskFullError(str(hub_cache()), None, shutil.disk_usage(existing_parent(hub_cache())).free)
    if isinstance(err, OSError) and "Consistency check failed" in str(err):
        return _Transient("truncated body")
    if isinstance(err, HfHubHTTPError) and status is not None and 400 <= status < 500:
        return HubNotFoundError(req.repo, f"request (HTTP {status})", "check MODEL and MODEL_REVISION")
    return err


def with_retries(req: DownloadRequest, action: Callable[[], T], what: str) -> T:
    """Run ``action``; retry transient failures with exponential backoff, never a 4xx."""
    delay = req.backoff
    for attempt in range(req.retries + 1):
        try:
            return action()
        except Exception as err:
            mapped = classify(err, req)
            if not isinstance(mapped, _Transient):
                if mapped is err:
                    raise
                raise mapped from err
            if attempt == req.retries:
                raise HubUnreachableError(req.repo, f"{what}: {mapped}", offline_ready=False) from err
            print(f"spark-serve: {what}: {mapped}; retrying in {delay:.1f}s", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
    raise AssertionError("unreachable")

"""First-run download: resumable, verified, visible, offline-capable.

Flow (online): ask the Hub for the file list, sizes and hashes at the
revision → keep only what serving needs → refuse early when the cache volume
is too small → fetch each missing LFS file into a stable partial file that the
next start resumes → verify its sha256 and adopt it into the cache → let
``snapshot_download`` fetch the small files and link the snapshot → verify
everything → record it in a manifest. Offline (``HF_HUB_OFFLINE=1``) the cached
snapshot is used only once its manifest says it is complete.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import (
    DiskFullError,
    HubNotFoundError,
    HubUnreachableError,
    IntegrityError,
    ListingInvalidError,
    SnapshotIncompleteError,
)
from ..meta import DownloadRequest
from .fetch import fetch_all
from .hubcalls import existing_parent, with_retries
from .patterns import RepoFile, select_files
from .progress import Progress, Reporter
from .store import (
    Manifest,
    download_lock,
    has_blob,
    hub_cache,
    partial_size,
    prune_partials,
)
from .verify import verify_snapshot

OnUpdate = Callable[[str, dict[str, Any] | None], None]
DISK_MARGIN_MIN = 256 * 1024 * 1024


def check_disk(needed: int, available: int, where: str) -> None:
    """Pure: refuse when ``available`` is below ``needed`` plus a margin."""
    margin = max(DISK_MARGIN_MIN, needed // 50)
    if needed > 0 and available < needed + margin:
        raise DiskFullError(where, needed + margin, available)


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def checked_sha256(repo: str, path: str, value: Any) -> str:
    """The listing's sha256 of an LFS file, which names files on disk: 64 hex digits or refused."""
    if not isinstance(value, str) or not _SHA256.match(value):
        raise ListingInvalidError(repo, path, str(value))
    return value


def remote_files(req: DownloadRequest) -> tuple[str, list[RepoFile]]:
    from huggingface_hub import HfApi

    info = with_retries(
        req,
        lambda: HfApi().model_info(req.repo, revision=req.revision, files_metadata=True, token=req.token),
        "listing files",
    )
    files = [
        RepoFile(
            s.rfilename,
            int(s.size or (s.lfs.size if s.lfs else 0) or 0),
            checked_sha256(req.repo, s.rfilename, s.lfs.sha256) if s.lfs else None,
            s.blob_id,
        )
        for s in info.siblings or []
    ]
    assert info.sha is not None
    return info.sha, select_files(files, req.allow, req.ignore)


def _cached(repo: str, commit: str, spec: RepoFile) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, spec.path, revision=commit)
    return Path(found) if isinstance(found, str) else None


def _snapshot(req: DownloadRequest, files: list[RepoFile]) -> Path:
    from huggingface_hub import snapshot_download

    path = with_retries(
        req,
        lambda: snapshot_download(
            req.repo,
            revision=req.revision,
            token=req.token,
            allow_patterns=[f.path for f in files],
            max_workers=4,
        ),
        "linking the snapshot",
    )
    return Path(path)


def _repair(req: DownloadRequest, snapshot: Path, bad: dict[str, str], files: list[RepoFile]) -> None:
    """Remove corrupt files so they are fetched again (LFS through the resumable path)."""
    from huggingface_hub import hf_hub_download

    for spec in files:
        if spec.path not in bad:
            continue
        print(f"spark-serve: {spec.path}: {bad[spec.path]}; fetching it again", file=sys.stderr, flush=True)
        link = snapshot / spec.path
        if spec.is_lfs:
            target = link.resolve()
            link.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
        else:

            def refetch(path: str = spec.path) -> str:
                return hf_hub_download(
                    req.repo, path, revision=snapshot.name, token=req.token, force_download=True
                )

            with_retries(req, refetch, f"downloading {spec.path}")


def _download_once(req: DownloadRequest, on_update: OnUpdate) -> tuple[Path, Manifest, str]:
    commit, files = remote_files(req)
    manifest = Manifest.load(req.repo, commit) or Manifest(req.repo, commit, files)
    manifest.files = files
    manifest.save()
    prune_partials(req.repo, files)
    missing = [
        f
        for f in files
        if _cached(req.repo, commit, f) is None and not (f.sha256 and has_blob(req.repo, f.sha256))
    ]
    resumed = sum(partial_size(f.sha256) for f in missing if f.sha256)
    needed = sum(f.size for f in missing) - resumed
    check_disk(needed, shutil.disk_usage(existing_parent(hub_cache())).free, str(hub_cache()))
    total = sum(f.size for f in files)
    progress = Progress(len(files), total, files_done=len(files) - len(missing), bytes_done=total - needed)
    label = f"{req.repo}@{commit[:12]}"
    if missing:
        on_update("downloading", progress.snapshot())
        with Reporter(progress, label, req.interval, lambda snap: on_update("downloading", snap)):
            fetch_all(req, commit, [f for f in missing if f.is_lfs], progress, manifest)
            snapshot = _snapshot(req, files)
            small = [f for f in missing if not f.is_lfs]
            progress.files_done += len(small)
            progress.add_bytes(sum(f.size for f in small))
    else:
        snapshot = _snapshot(req, files)
    return snapshot, manifest, commit


def ensure_snapshot(req: DownloadRequest, on_update: OnUpdate) -> Path:
    """Return a complete, verified snapshot directory of ``req.repo`` at ``req.revision``."""
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]

    disable_progress_bars()  # carriage-return bars read badly in `docker logs`; Reporter prints lines
    with download_lock():
        if req.offline:
            return offline_snapshot(req)
        try:
            return _online(req, on_update)
        except HubUnreachableError as err:
            if not offline_ready(req):
                raise
            raise HubUnreachableError(req.repo, err.detail, offline_ready=True) from err


def _online(req: DownloadRequest, on_update: OnUpdate) -> Path:
    for _ in range(3):
        snapshot, manifest, commit = _download_once(req, on_update)
        if snapshot.name != commit:
            print(
                f"spark-serve: {req.repo}@{req.revision} moved during download; following it",
                file=sys.stderr,
                flush=True,
            )
            continue
        on_update("verifying", None)
        bad = verify_snapshot(snapshot, manifest)
        if bad:
            _repair(req, snapshot, bad, manifest.files)
            manifest.save()
            snapshot, manifest, commit = _download_once(req, on_update)
            bad = verify_snapshot(snapshot, manifest)
            if bad:
                path, problem = next(iter(bad.items()))
                raise IntegrityError(req.repo, path, problem)
        manifest.complete = True
        manifest.save()
        return snapshot
    raise HubNotFoundError(
        req.repo, f"a stable commit for '{req.revision}'", "pin MODEL_REVISION to a commit"
    )


def _local_snapshot(req: DownloadRequest) -> Path | None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(
            snapshot_download(
                req.repo,
                revision=req.revision,
                local_files_only=True,
                allow_patterns=req.allow,
                ignore_patterns=req.ignore,
            )
        )
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def offline_ready(req: DownloadRequest) -> bool:
    snapshot = _local_snapshot(req)
    manifest = Manifest.load(req.repo, snapshot.name) if snapshot else None
    return bool(manifest and manifest.complete)


def offline_snapshot(req: DownloadRequest) -> Path:
    """The cached snapshot, without network; refused when incomplete."""
    snapshot = _local_snapshot(req)
    if snapshot is None:
        raise SnapshotIncompleteError(req.repo, [])
    manifest = Manifest.load(req.repo, snapshot.name)
    if manifest is None:
        print(
            f"spark-serve: {req.repo}: snapshot was not downloaded by spark-serve; serving it unverified",
            file=sys.stderr,
            flush=True,
        )
        return snapshot
    bad = verify_snapshot(snapshot, manifest)
    manifest.save()
    if bad:
        raise SnapshotIncompleteError(req.repo, sorted(bad))
    return snapshot

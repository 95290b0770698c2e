"""spark-serve's own files beside the Hugging Face cache (under HF_HOME):
resumable partial downloads, verification manifests and the download lock.

The Hub cache itself is only read and written through huggingface_hub, with
one exception stated here: a fully downloaded, sha256-verified LFS file is
adopted into the cache's blob store (``blobs/<sha256>``, the layout
huggingface_hub documents) by an atomic rename, after which
``snapshot_download`` links it into the snapshot without fetching it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..state import atomic_write
from .patterns import RepoFile


def hf_home() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME)


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_cache_dir(repo: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return hub_cache() / repo_folder_name(repo_id=repo, repo_type="model")


def own_dir() -> Path:
    return hf_home() / "spark-serve"


def partial_path(sha256: str) -> Path:
    return own_dir() / "partial" / f"{sha256}.part"


def partial_size(sha256: str) -> int:
    try:
        return partial_path(sha256).stat().st_size
    except FileNotFoundError:
        return 0


def prune_partials(repo: str, files: list[RepoFile]) -> list[Path]:
    """Remove the leftovers of this snapshot's downloads, and only those nobody is writing:

    - spark-serve's ``<sha256>.part`` of a file of this snapshot whose blob is now in
      the cache (another repository's partials are kept: they resume when it is served);
    - huggingface_hub's ``<etag>.<id>.incomplete`` in this repository's blobs, for a
      file of this snapshot, when huggingface_hub's own lock for that file is free
      (held, another process is writing it).

    Called with :func:`download_lock` held. Returns what was removed."""
    from filelock import FileLock, Timeout

    removed: list[Path] = []
    for spec in files:
        part = partial_path(spec.sha256) if spec.sha256 else None
        if part is not None and part.exists() and has_blob(repo, str(spec.sha256)):
            part.unlink(missing_ok=True)
            removed.append(part)
    blobs, etags = repo_cache_dir(repo) / "blobs", {f.sha256 or f.blob_id for f in files} - {None}
    locks = hub_cache() / ".locks" / repo_cache_dir(repo).name
    for path in sorted(blobs.glob("*.incomplete")) if blobs.is_dir() else []:
        etag = path.name.split(".", 1)[0]
        if etag not in etags:
            continue
        try:
            with FileLock(str(locks / f"{etag}.lock"), timeout=0):
                path.unlink(missing_ok=True)
                removed.append(path)
        except (Timeout, OSError):  # being written now, or the lock folder is not ours to create
            continue
    return removed


def has_blob(repo: str, sha256: str) -> bool:
    return (repo_cache_dir(repo) / "blobs" / sha256).is_file()


def adopt_blob(repo: str, part: Path, sha256: str) -> Path:
    """Move a verified partial into the cache's blob store."""
    blob = repo_cache_dir(repo) / "blobs" / sha256
    blob.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(part, 0o644)
    import shutil  # not at import: a plan reads the store, never moves in it

    shutil.move(str(part), blob)  # a rename on the same volume
    return blob


@contextmanager
def download_lock() -> Iterator[None]:
    """One downloader per cache volume at a time."""
    own_dir().mkdir(parents=True, exist_ok=True)
    with open(own_dir() / "download.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("spark-serve: another download holds the cache lock; waiting", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@dataclass
class Manifest:
    """The files a snapshot must hold, and which were verified (path → [size, mtime_ns])."""

    repo: str
    commit: str
    files: list[RepoFile]
    verified: dict[str, list[int]] = field(default_factory=dict)
    complete: bool = False

    @staticmethod
    def path_for(repo: str, commit: str) -> Path:
        return own_dir() / "manifests" / repo.replace("/", "--") / f"{commit}.json"

    @classmethod
    def load(cls, repo: str, commit: str) -> Manifest | None:
        try:
            data: dict[str, Any] = json.loads(cls.path_for(repo, commit).read_text())
            return cls(
                repo,
                commit,
                [RepoFile(**f) for f in data["files"]],
                data.get("verified", {}),
                bool(data.get("complete")),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self) -> None:
        target = self.path_for(self.repo, self.commit)
        target.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "repo": self.repo,
            "commit": self.commit,
            "files": [asdict(f) for f in self.files],
            "verified": self.verified,
            "complete": self.complete,
        }
        atomic_write(target, json.dumps(doc, indent=1))

"""Resumable, verified fetch of LFS files into stable partial files.

huggingface_hub 2.x downloads into a per-process ``*.incomplete`` file and
starts over after a restart. Here each LFS file streams into
``$HF_HOME/spark-serve/partial/<sha256>.part`` through huggingface_hub's own
``http_get`` (which resumes within a process), is hashed while it is
written, and a restarted process continues from the bytes already on disk.
A verified file is adopted into the cache's blob store.
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import IntegrityError
from ..meta import DownloadRequest
from .hubcalls import with_retries
from .patterns import RepoFile
from .progress import Progress
from .store import Manifest, adopt_blob, partial_path, partial_size
from .verify import lfs_problem, stamp

MAX_WORKERS = 8
_BLOCK = 8 * 1024 * 1024


class HashingWriter:
    """A file wrapper that hashes what is written, for ``http_get``."""

    def __init__(self, handle: BinaryIO, digest: Any) -> None:
        self.handle, self.digest = handle, digest
        self.consistent = True  # False once http_get rewinds (server ignored Range)

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.handle.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        self.consistent = False
        return self.handle.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        self.consistent = False
        return self.handle.truncate(size)


def _digest_of(path: Path) -> Any:
    digest = hashlib.sha256()
    if path.exists():
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
    return digest


def _download(req: DownloadRequest, url: str, spec: RepoFile, part: Path, progress: Progress) -> str:
    """One attempt; returns the sha256 of the whole partial file."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    done = partial_size(spec.sha256 or "")
    if done > spec.size:
        part.unlink()
        done = 0
    digest = _digest_of(part)
    if done < spec.size:
        with part.open("ab") as handle:
            writer = HashingWriter(handle, digest)
            http_get(
                url,
                writer,  # type: ignore[arg-type]
                resume_size=done,
                headers=build_hf_headers(token=req.token),
                expected_size=spec.size,
                displayed_filename=spec.path,
                tqdm_class=progress.bar_class(),
            )
        if not writer.consistent:
            digest = _digest_of(part)
    return str(digest.hexdigest())


def fetch_lfs(
    req: DownloadRequest, commit: str, spec: RepoFile, progress: Progress, manifest: Manifest
) -> None:
    """Fetch one LFS file (resuming), check size and sha256, adopt it into the cache."""
    from huggingface_hub import hf_hub_url

    assert spec.sha256 is not None
    part = partial_path(spec.sha256)
    part.parent.mkdir(parents=True, exist_ok=True)
    url = hf_hub_url(req.repo, spec.path, revision=commit)
    for round_ in (1, 2):
        sha = with_retries(req, lambda: _download(req, url, spec, part, progress), f"downloading {spec.path}")
        size = part.stat().st_size
        problem = lfs_problem(size, sha, spec)
        if problem is None:
            blob = adopt_blob(req.repo, part, spec.sha256)
            manifest.verified[spec.path] = stamp(blob)
            progress.file_done()
            return
        part.unlink(missing_ok=True)
        progress.add_bytes(-size)
        print(f"spark-serve: {spec.path}: {problem}; fetching it again", file=sys.stderr, flush=True)
        if round_ == 2:
            raise IntegrityError(req.repo, spec.path, problem)


def fetch_all(
    req: DownloadRequest, commit: str, specs: list[RepoFile], progress: Progress, manifest: Manifest
) -> None:
    """Fetch LFS files in parallel; the first failure stops the rest."""
    if not specs:
        return
    with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(specs)), thread_name_prefix="fetch") as pool:
        futures = [pool.submit(fetch_lfs, req, commit, spec, progress, manifest) for spec in specs]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for future in done:
            if future.exception() is not None:
                for pending in futures:
                    pending.cancel()
                raise future.exception()  # type: ignore[misc]

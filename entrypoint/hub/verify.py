"""Integrity: sizes, LFS sha256 and git blob ids against the Hub's metadata."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .patterns import RepoFile
from .store import Manifest

_BLOCK = 8 * 1024 * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_problem(size: int, sha256: str, spec: RepoFile) -> str | None:
    """Why an LFS file of this size and hash does not match ``spec``, or None."""
    if size != spec.size:
        return f"size {size} != {spec.size}"
    return None if sha256 == spec.sha256 else "sha256 mismatch"


def file_problem(path: Path, spec: RepoFile) -> str | None:
    """Why ``path`` does not match ``spec``, or None when it does (hashes it)."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != spec.size:
        return f"size {size} != {spec.size}"
    if spec.sha256 is not None:
        return lfs_problem(size, sha256_of(path), spec)
    if spec.blob_id is not None and git_blob_id(path) != spec.blob_id:
        return "git blob id mismatch"
    return None


def stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def verify_snapshot(snapshot: Path, manifest: Manifest) -> dict[str, str]:
    """Check every file of the manifest in ``snapshot``; hash only what changed
    since it was last verified. Records passes in the manifest. Returns path → problem."""
    problems: dict[str, str] = {}
    for spec in manifest.files:
        path = snapshot / spec.path
        if path.is_file() and manifest.verified.get(spec.path) == stamp(path.resolve()):
            continue
        problem = file_problem(path, spec)
        if problem is None:
            manifest.verified[spec.path] = stamp(path.resolve())
        else:
            manifest.verified.pop(spec.path, None)
            problems[spec.path] = problem
    return problems

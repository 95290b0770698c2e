"""A local server speaking the Hugging Face Hub's HTTP API to the real
huggingface_hub client (point ``HF_ENDPOINT`` at it), with fault injection.

Serves model info (siblings, sha, LFS metadata), the recursive tree, whoami-v2 and
``resolve`` with the commit / etag / linked-size headers and ``Range``. Like the
Hub, ``resolve`` of an LFS file answers 302 to a CDN on another host (here
127.0.0.2, another origin, so the client drops its Authorization header there),
which serves the bytes; small files are served by ``resolve`` itself. Never
sends Xet headers, so the client takes the plain HTTP path.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

LFS_THRESHOLD = 1024  # files at least this big are stored as LFS, like the Hub's *.safetensors rule


@dataclass
class Fault:
    """Applied to matching requests until ``times`` is used up.

    kind: "status" (reply ``status``), "drop" (close after ``after`` body bytes),
    "stall" (sleep ``seconds`` after ``after`` body bytes), "corrupt" (flip the
    byte at offset ``after``), "truncate" (announce the full length, send ``after`` bytes, close).
    """

    kind: str
    path: str = ""  # substring of the request path; "" matches all
    status: int = 500
    after: int = 0
    seconds: float = 0.0
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass
class Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    meta: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=dict
    )  # stored metadata, like the Hub's
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False

    def commit(self, files: dict[str, bytes], ref: str = "main") -> str:
        meta = {path: entry(path, data) for path, data in files.items()}
        digest = hashlib.sha1(repr(sorted((p, m["blobId"]) for p, m in meta.items())).encode())
        sha = digest.hexdigest()
        self.commits[sha], self.meta[sha] = dict(files), meta
        self.refs[ref] = sha
        return sha

    def resolve(self, rev: str) -> str | None:
        return rev if rev in self.commits else self.refs.get(rev)


def entry(path: str, data: bytes) -> dict[str, Any]:
    info: dict[str, Any] = {"path": path, "size": len(data), "blobId": git_blob_id(data)}
    if len(data) >= LFS_THRESHOLD:
        info["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
    return info


class Hub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.faults: list[Fault] = []
        self.bytes_sent: Counter[str] = Counter()
        self.gets: Counter[str] = Counter()  # GETs of a whole file, or of its rest from an offset
        self.range_gets: Counter[str] = Counter()  # GETs of a closed byte range (bytes=a-b)
        self.requests: list[tuple[str, str]] = []
        self.tokens: dict[str, str] = {}  # token → user name, for /api/whoami-v2
        self.lock = threading.Lock()
        self.cdn_auth: list[bool] = []  # per CDN request: did it carry an Authorization header
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.cdn = ThreadingHTTPServer(("127.0.0.2", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.cdn_url = f"http://127.0.0.2:{self.cdn.server_address[1]}"
        self._threads = []
        for server in (self.server, self.cdn):
            server.daemon_threads = True
            self._threads.append(threading.Thread(target=server.serve_forever, daemon=True))

    def __enter__(self) -> Hub:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        for server in (self.server, self.cdn):
            server.shutdown()
            server.server_close()

    def add_repo(self, repo_id: str, files: dict[str, bytes], *, gated: bool = False) -> str:
        repo = self.repos.setdefault(repo_id, Repo(gated=gated))
        return repo.commit(files)

    def add_dir(self, repo_id: str, directory: Path) -> str:
        files = {
            p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()
        }
        return self.add_repo(repo_id, files)

    def take_fault(self, path: str, kinds: tuple[str, ...]) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.kind in kinds and fault.path in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def reset_counters(self) -> None:
        with self.lock:
            self.bytes_sent.clear()
            self.gets.clear()
            self.range_gets.clear()
            self.requests.clear()


_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_CDN = re.compile(r"^/cdn/(?P<repo>[^/]+/[^/]+)/(?P<commit>[0-9a-f]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")


def _handler(hub: Hub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:
            pass

        def _error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _lookup(self, repo_id: str, rev: str) -> tuple[Repo, str] | None:
            repo = hub.repos.get(repo_id)
            authorized = "authorization" in {k.lower() for k in self.headers}
            if repo is None:  # like the Hub: 401 to anonymous callers, 404 to authenticated ones
                self._error(404 if authorized else 401, "RepoNotFound", f"Repository not found: {repo_id}")
                return None
            if repo.gated and not authorized:
                self._error(403, "GatedRepo", f"Access to model {repo_id} is restricted.")
                return None
            commit = repo.resolve(unquote(rev))
            if commit is None:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
                return None
            return repo, commit

        def _status_fault(self, path: str) -> bool:
            fault = hub.take_fault(path, ("status",))
            if fault is None:
                return False
            if fault.status in (401, 403, 404):
                codes = {401: "RepoNotFound", 403: "GatedRepo", 404: "RepoNotFound"}
                self._error(fault.status, codes[fault.status], "injected")
            else:
                self._error(fault.status, "", "injected server error")
            return True

        def do_HEAD(self) -> None:
            self._route()

        def do_GET(self) -> None:
            self._route()

        def _route(self) -> None:
            path = urlparse(self.path).path
            with hub.lock:
                hub.requests.append((self.command, path))
            if self._status_fault(path):
                return
            on_cdn = self.server is hub.cdn
            if on_cdn != bool(_CDN.match(path)):
                self._error(404, "EntryNotFound", f"no route {path} on this host")
            elif m := _CDN.match(path):
                with hub.lock:
                    hub.cdn_auth.append("authorization" in {k.lower() for k in self.headers})
                self._serve(m["repo"], m["commit"], unquote(m["path"]))
            elif path == "/api/whoami-v2":
                self._whoami()
            elif m := _TREE.match(path):
                self._tree(m["repo"], m["rev"])
            elif m := _INFO.match(path):
                self._info(m["repo"], m["rev"] or "main")
            elif m := _RESOLVE.match(path):
                self._resolve(m["repo"], m["rev"], unquote(m["path"]))
            else:
                self._error(404, "EntryNotFound", f"no route {path}")

        def _whoami(self) -> None:
            auth = self.headers.get("Authorization", "")
            user = hub.tokens.get(auth.removeprefix("Bearer ").strip())
            if user is None:  # like the Hub: a missing or unknown token is a 401
                self._error(401, "", "Invalid credentials in Authorization header")
            else:
                self._json({"type": "user", "name": user, "auth": {"type": "access_token"}})

        def _info(self, repo_id: str, rev: str) -> None:
            found = self._lookup(repo_id, rev)
            if found:
                repo, commit = found
                siblings = [
                    {"rfilename": e.pop("path"), **e}
                    for e in (dict(repo.meta[commit][p]) for p in sorted(repo.commits[commit]))
                ]
                self._json(
                    {
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": commit,
                        "private": False,
                        "gated": "auto" if repo.gated else False,
                        "siblings": siblings,
                        "tags": [],
                    }
                )

        def _tree(self, repo_id: str, rev: str) -> None:
            found = self._lookup(repo_id, rev)
            if found:
                repo, commit = found
                items = []
                for p in sorted(repo.commits[commit]):
                    e = repo.meta[commit][p]
                    item: dict[str, Any] = {"type": "file", "oid": e["blobId"], "size": e["size"], "path": p}
                    if "lfs" in e:
                        item["lfs"] = {"oid": e["lfs"]["sha256"], "size": e["size"], "pointerSize": 134}
                    items.append(item)
                self._json(items)

        def _resolve(self, repo_id: str, rev: str, file_path: str) -> None:
            found = self._lookup(repo_id, rev)
            if not found:
                return
            repo, commit = found
            e = repo.meta[commit].get(file_path)
            if e is None:
                self._error(404, "EntryNotFound", f"{file_path} does not exist")
                return
            if "lfs" not in e:
                self._serve(repo_id, commit, file_path)
                return
            # Like the Hub: the file's metadata on a 302 to the CDN, which serves the bytes.
            self.send_response(302)
            self.send_header("Location", f"{hub.cdn_url}/cdn/{repo_id}/{commit}/{quote(file_path)}")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("X-Linked-Etag", f'"{e["lfs"]["sha256"]}"')
            self.send_header("X-Linked-Size", str(e["size"]))
            self.send_header("ETag", f'"{e["blobId"]}"')
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _serve(self, repo_id: str, commit: str, file_path: str) -> None:
            repo = hub.repos[repo_id]
            data = repo.commits[commit].get(file_path)
            if data is None:
                self._error(404, "EntryNotFound", f"{file_path} does not exist")
                return
            e = repo.meta[commit][file_path]
            start, end = 0, len(data) - 1
            ranged = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if ranged:
                start = min(int(ranged[1]), len(data))
                end = min(int(ranged[2]), len(data) - 1) if ranged[2] else end
            body = data[start : end + 1]
            self.send_response(206 if ranged else 200)
            self.send_header("X-Repo-Commit", commit)
            if "lfs" in e:
                self.send_header("X-Linked-Etag", f'"{e["lfs"]["sha256"]}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{e["lfs"]["sha256"]}"')
            else:
                self.send_header("ETag", f'"{e["blobId"]}"')
            self.send_header("Accept-Ranges", "bytes")
            if ranged:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            header_read = bool(ranged and ranged[2])  # a closed range is not a fetch of the file
            with hub.lock:
                (hub.range_gets if header_read else hub.gets)[file_path] += 1
            self._send_body(file_path, body, start, faults=not header_read)

        def _send_body(self, file_path: str, body: bytes, start: int, *, faults: bool = True) -> None:
            fault = hub.take_fault(file_path, ("drop", "stall", "corrupt", "truncate")) if faults else None
            limit = len(body)
            if fault is not None and fault.kind in ("drop", "truncate", "stall"):
                limit = max(min(fault.after - start, len(body)), 0)
            if fault is not None and fault.kind == "corrupt":
                offset = fault.after - start
                if 0 <= offset < len(body):
                    body = body[:offset] + bytes([body[offset] ^ 0xFF]) + body[offset + 1 :]
            sent = 0
            try:
                while sent < limit:
                    chunk = body[sent : min(sent + (1 << 20), limit)]
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    with hub.lock:
                        hub.bytes_sent[file_path] += len(chunk)
                if fault is not None and fault.kind == "stall":
                    self.wfile.flush()
                    time.sleep(fault.seconds)
                    rest = body[sent:]
                    self.wfile.write(rest)
                    with hub.lock:
                        hub.bytes_sent[file_path] += len(rest)
                elif fault is not None and fault.kind in ("drop", "truncate"):
                    self.wfile.flush()
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    return Handler

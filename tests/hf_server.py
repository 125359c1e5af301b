"""A small, real HTTP server that stands in for the Hugging Face Hub in tests.

Importers use the real ``huggingface_hub`` client, so faking it at the Python level would test our
idea of the protocol rather than the protocol. This module instead serves folders over HTTP with the
routes, headers and error codes the client relies on (see shared/notes/hf-compatible-endpoint.md),
so tests exercise the client's real request, caching and error-mapping code.

Only the standard library (plus PyYAML for model cards) is used: the server must not depend on the
Django settings or database that the code under test uses.

Where the real Hub and a naive fake would differ, this one follows the Hub, so that an importer
which passes against it also works against huggingface.co:

* LFS files advertise the git oid of their *pointer* file as ``blobId`` / tree ``oid``; only
  ``lfs.sha256`` hashes the content. Small files advertise the git blob sha1 of their content.
* Gated repos expose their metadata (model info, tree, refs) to everyone and answer
  ``401 GatedRepo`` only on ``/resolve`` (file downloads) when no ``Authorization`` header is sent.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import traceback
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import yaml

__all__ = ["FakeHub"]

#: Files at least this large are stored with git LFS on the Hub whatever their extension.
LFS_THRESHOLD = 10 * 1024 * 1024

#: Extensions the Hub's default ``.gitattributes`` routes to LFS, so small weight files in tests
#: are LFS files exactly as they would be on huggingface.co.
# fmt: off
LFS_EXTENSIONS = frozenset({
    "7z", "arrow", "bin", "bz2", "ckpt", "ftz", "gguf", "gz", "h5", "joblib", "lfs", "mlmodel",
    "model", "msgpack", "npy", "npz", "onnx", "ot", "parquet", "pb", "pickle", "pkl", "pt", "pth",
    "rar", "safetensors", "tar", "tflite", "tgz", "wasm", "xz", "zip", "zst", "tfevents",
})
# fmt: on

#: Folders never published: a git checkout's metadata and the client's own ``local_dir`` metadata,
#: so a folder produced by ``snapshot_download(local_dir=...)`` can be served back unchanged.
_SKIPPED_DIRS = (".git", ".cache/huggingface")

_COMMIT_RE = re.compile(r"[0-9a-f]{40}")
_FRONT_MATTER_RE = re.compile(r"^(\s*---[\r\n]+)([\S\s]*?)([\r\n]+---(\r\n|\n|$))")
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_OCTET = "application/octet-stream"


def _git_blob_oid(data: bytes) -> str:
    """The oid git gives a blob, which the Hub reports as ``blobId`` / ``oid``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git stores in place of an LFS file; its oid is what the Hub reports."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _iso(moment: datetime) -> str:
    """Timestamps as the Hub writes them (millisecond precision, ``Z`` suffix)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _is_true(values: list[str] | None) -> bool:
    """Query booleans: clients send ``true``, ``True`` or ``1`` depending on the HTTP library."""
    return bool(values) and values[-1].strip().lower() in {"1", "true", "yes"}


def _header_safe(text: str) -> str:
    """Header values must be latin-1; repo ids and paths need not be."""
    return text.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")


@dataclass(frozen=True)
class _File:
    path: str
    data: bytes
    sha256: str
    lfs: bool
    #: git oid of what git stores: the content, or the LFS pointer for LFS files.
    blob_oid: str
    pointer_size: int

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def etag(self) -> str:
        """What ``/resolve`` returns as ETag; the client names its cached blob after it."""
        return self.sha256 if self.lfs else self.blob_oid

    @classmethod
    def build(cls, path: str, data: bytes) -> _File:
        sha256 = hashlib.sha256(data).hexdigest()
        suffix = path.rsplit("/", 1)[-1].rpartition(".")[2].lower() if "." in path else ""
        lfs = len(data) >= LFS_THRESHOLD or suffix in LFS_EXTENSIONS
        pointer = _lfs_pointer(sha256, len(data))
        return cls(
            path=path,
            data=data,
            sha256=sha256,
            lfs=lfs,
            blob_oid=_git_blob_oid(pointer if lfs else data),
            pointer_size=len(pointer) if lfs else 0,
        )


@dataclass
class _Snapshot:
    commit: str
    files: dict[str, _File]
    created: datetime
    #: git tree oids of every directory, "" being the root.
    tree_oids: dict[str, str] = field(default_factory=dict)
    card_data: dict[str, Any] | None = None
    config: dict[str, Any] | None = None

    def directories(self) -> set[str]:
        return set(self.tree_oids) - {""}


@dataclass
class _Repo:
    repo_id: str
    created: datetime
    gated: bool = False
    commits: dict[str, _Snapshot] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """Branch, tag or full commit to commit, as the Hub does (``refs/...`` spellings too)."""
        for prefix, refs in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if revision.startswith(prefix) and revision[len(prefix) :] in refs:
                return refs[revision[len(prefix) :]]
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        if _COMMIT_RE.fullmatch(revision) and revision in self.commits:
            return revision
        return None


def _read_folder(folder: Path) -> dict[str, _File]:
    files: dict[str, _File] = {}
    for item in sorted(folder.rglob("*")):
        rel = item.relative_to(folder).as_posix()
        if any(rel == skip or rel.startswith(skip + "/") for skip in _SKIPPED_DIRS):
            continue
        if item.is_file():
            files[rel] = _File.build(rel, item.read_bytes())
    return files


def _manifest_commit(files: dict[str, _File]) -> str:
    """Default commit id: stable for identical content, so re-adding a folder is idempotent."""
    manifest = "".join(f"{path}\0{files[path].sha256}\n" for path in sorted(files))
    return hashlib.sha1(manifest.encode(), usedforsecurity=False).hexdigest()


def _tree_oids(files: dict[str, _File]) -> dict[str, str]:
    """git tree oids for every directory, so tree listings carry real-looking folder oids."""
    children: dict[str, dict[str, str | None]] = {"": {}}
    for path, entry in files.items():
        parts = path.split("/")
        for depth in range(len(parts) - 1):
            parent = "/".join(parts[:depth])
            children.setdefault(parent, {})[parts[depth]] = None
            children.setdefault("/".join(parts[: depth + 1]), {})
        children["/".join(parts[:-1])][parts[-1]] = entry.blob_oid

    oids: dict[str, str] = {}

    def oid_of(directory: str) -> str:
        rows: list[tuple[str, bytes]] = []
        for name, blob in children[directory].items():
            if blob is None:
                sub = oid_of(f"{directory}/{name}" if directory else name)
                rows.append((name + "/", b"40000 " + name.encode() + b"\0" + bytes.fromhex(sub)))
            else:
                rows.append((name, b"100644 " + name.encode() + b"\0" + bytes.fromhex(blob)))
        body = b"".join(row for _, row in sorted(rows))
        oid = hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()
        oids[directory] = oid
        return oid

    oid_of("")
    return oids


def _parse_card(files: dict[str, _File]) -> dict[str, Any] | None:
    """YAML front matter of README.md, or None when absent or malformed (the Hub then omits it)."""
    readme = files.get("README.md")
    if readme is None:
        return None
    match = _FRONT_MATTER_RE.search(readme.data.decode("utf-8-sig", "replace"))
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _parse_config(files: dict[str, _File]) -> dict[str, Any] | None:
    """The subset of config.json the Hub repeats in model info (what transformers keys on)."""
    config = files.get("config.json")
    if config is None:
        return None
    try:
        data = json.loads(config.data)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {key: data[key] for key in ("architectures", "model_type") if key in data}


class _HubError(Exception):
    """An error answer: status, the ``X-Error-Code`` the client maps to an exception, a message."""

    def __init__(
        self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class FakeHub:
    """Serves repos from folders as a Hugging Face endpoint, for tests.

    Folders are read when added, so a test may change a folder and add it again as a new commit
    while the older commit stays downloadable. Start it with ``start()`` or as a context manager;
    pass the returned endpoint explicitly to the client (``HF_ENDPOINT`` is read once, at import).
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        #: Tracebacks of server-side bugs (answered with 500), so a test can show them.
        self.errors: list[str] = []
        self.endpoint: str | None = None
        self._repos: dict[str, _Repo] = {}
        self._mutations: dict[tuple[str, str], bytes] = {}
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- configuration -------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        folder: Path,
        *,
        commit: str | None = None,
        tags: dict[str, str] | None = None,
        branches: tuple[str, ...] = ("main",),
        gated: bool = False,
    ) -> str:
        """Register repo_id ('org/name') at a commit and return the commit.

        The commit defaults to a sha1 over the sorted (path, sha256) manifest. Adding the same repo
        again with another folder/commit moves ``branches`` (by default 'main') to the new commit;
        older commits stay resolvable. ``tags`` map a tag name to a revision resolved after the
        branches moved: a commit of this repo, or e.g. ``"main"`` to tag the commit being added.
        ``gated`` applies to the whole repo (the latest call wins).
        """
        org, sep, name = repo_id.partition("/")
        if not (org and sep and name) or "/" in name:
            raise ValueError(f"repo_id must look like 'org/name', got {repo_id!r}")
        folder = Path(folder)
        if not folder.is_dir():
            raise ValueError(f"{folder} is not a folder")
        if commit is not None and not _COMMIT_RE.fullmatch(commit):
            raise ValueError(f"commit must be 40 lowercase hex digits, got {commit!r}")
        files = _read_folder(folder)
        commit = commit or _manifest_commit(files)
        now = datetime.now(UTC)
        snapshot = _Snapshot(
            commit=commit,
            files=files,
            created=now,
            tree_oids=_tree_oids(files),
            card_data=_parse_card(files),
            config=_parse_config(files),
        )
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo(repo_id=repo_id, created=now))
            repo.gated = gated
            repo.commits[commit] = snapshot
            for branch in branches:
                repo.branches[branch] = commit
            for tag, target in (tags or {}).items():
                resolved = repo.resolve(target)
                if resolved is None:
                    raise ValueError(f"tag {tag!r} points at unknown revision {target!r}")
                repo.tags[tag] = resolved
        return commit

    def mutate_on_download(self, repo_id: str, path: str, new_bytes: bytes) -> None:
        """Serve different bytes than the metadata promises for this file (in every commit).

        For testing hash-mismatch detection: model info, tree and HEAD keep advertising the original
        size, sha256 and blob id, while GET returns ``new_bytes``. Give them the original length to
        get past the client's own size check and reach the importer's hash check.
        """
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None or not any(path in snap.files for snap in repo.commits.values()):
                raise KeyError(f"{repo_id}/{path} was never added")
            self._mutations[(repo_id, path)] = bytes(new_bytes)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on a free port of 127.0.0.1 in a background thread; return the endpoint URL."""
        if self._server is not None:
            assert self.endpoint is not None
            return self.endpoint
        server = _Server(("127.0.0.1", 0), _Handler)
        server.hub = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        host, port = server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        return self.endpoint

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- request handling (called from handler threads) ---------------------------------------

    def _snapshot(self, repo_id: str, revision: str) -> tuple[_Repo, _Snapshot]:
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                raise _HubError(404, "RepoNotFound", "Repository not found")
            commit = repo.resolve(revision)
            if commit is None:
                raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return repo, repo.commits[commit]

    def _repo(self, repo_id: str) -> _Repo:
        with self._lock:
            repo = self._repos.get(repo_id)
        if repo is None:
            raise _HubError(404, "RepoNotFound", "Repository not found")
        return repo

    def _model_info(self, repo_id: str, revision: str, query: dict[str, list[str]]) -> Any:
        repo, snap = self._snapshot(repo_id, revision)
        blobs = _is_true(query.get("blobs"))
        siblings = []
        for entry in snap.files.values():
            sibling: dict[str, Any] = {"rfilename": entry.path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_oid)
                if entry.lfs:
                    sibling["lfs"] = {
                        "sha256": entry.sha256,
                        "size": entry.size,
                        "pointerSize": entry.pointer_size,
                    }
            siblings.append(sibling)
        card = snap.card_data
        tags = card.get("tags") if card else None
        if isinstance(tags, str):
            tags = [tags]
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "author": repo_id.split("/")[0],
            "sha": snap.commit,
            "lastModified": _iso(snap.created),
            "createdAt": _iso(repo.created),
            "private": False,
            "gated": "auto" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [str(tag) for tag in tags] if isinstance(tags, list) else [],
            "siblings": siblings,
            "spaces": [],
            "usedStorage": sum(entry.size for entry in snap.files.values()),
        }
        if card is not None:
            info["cardData"] = card
            for key in ("pipeline_tag", "library_name"):
                if isinstance(card.get(key), str):
                    info[key] = card[key]
        if snap.config:
            info["config"] = snap.config
        expand = [value for values in query.get("expand", []) for value in values.split(",")]
        expand += query.get("expand[]", [])
        if expand:
            # The Hub answers only the requested properties (unknown names are ignored here).
            wanted = {*expand, "_id", "id"}
            info = {key: value for key, value in info.items() if key in wanted}
            if "siblings" in info:
                info["siblings"] = [{"rfilename": s["rfilename"]} for s in siblings]
        return info

    def _tree(self, repo_id: str, revision: str, path: str, query: dict[str, list[str]]) -> Any:
        _, snap = self._snapshot(repo_id, revision)
        path = path.strip("/")
        if path and path not in snap.directories():
            raise _HubError(
                404, "EntryNotFound", f"{path} does not exist on {revision!r}", self._commit(snap)
            )
        recursive = _is_true(query.get("recursive"))
        expand = _is_true(query.get("expand"))
        prefix = f"{path}/" if path else ""

        def wanted(candidate: str) -> bool:
            if not candidate.startswith(prefix):
                return False
            return recursive or "/" not in candidate[len(prefix) :]

        last_commit = {"id": snap.commit, "title": "Upload folder", "date": _iso(snap.created)}
        entries: list[dict[str, Any]] = []
        for directory in sorted(d for d in snap.directories() if wanted(d)):
            entries.append(
                {
                    "type": "directory",
                    "oid": snap.tree_oids[directory],
                    "size": 0,
                    "path": directory,
                }
            )
        for entry in snap.files.values():
            if not wanted(entry.path):
                continue
            item: dict[str, Any] = {
                "type": "file",
                "oid": entry.blob_oid,
                "size": entry.size,
                "path": entry.path,
            }
            if entry.lfs:
                item["lfs"] = {
                    "oid": entry.sha256,
                    "size": entry.size,
                    "pointerSize": entry.pointer_size,
                }
            entries.append(item)
        if expand:
            for item in entries:
                item["lastCommit"] = last_commit
        return entries

    def _refs(self, repo_id: str) -> Any:
        repo = self._repo(repo_id)
        with self._lock:
            branches = dict(repo.branches)
            tags = dict(repo.tags)
        return {
            "branches": [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit}
                for name, commit in branches.items()
            ],
            "converts": [],
            "tags": [
                {"name": name, "ref": f"refs/tags/{name}", "targetCommit": commit}
                for name, commit in tags.items()
            ],
            "pullRequests": [],
        }

    @staticmethod
    def _commit(snap: _Snapshot) -> dict[str, str]:
        return {"X-Repo-Commit": snap.commit}

    def _resolve(
        self, repo_id: str, revision: str, path: str, authorized: bool
    ) -> tuple[_File, bytes, dict[str, str]]:
        """File, bytes to send and headers for ``/resolve``; raises _HubError for error answers."""
        repo = self._repo(repo_id)
        if repo.gated and not authorized:
            raise _HubError(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
        _, snap = self._snapshot(repo_id, revision)
        entry = snap.files.get(path)
        if entry is None:
            raise _HubError(404, "EntryNotFound", "Entry not found", self._commit(snap))
        with self._lock:
            body = self._mutations.get((repo_id, path), entry.data)
        headers = {
            "X-Repo-Commit": snap.commit,
            "ETag": f'"{entry.etag}"',
            "X-Linked-Etag": f'"{entry.etag}"',
            "X-Linked-Size": str(entry.size),
            "Accept-Ranges": "bytes",
        }
        return entry, body, headers

    def _log(self, method: str, target: str) -> None:
        with self._lock:
            self.requests.append((method, target))


class _Server(ThreadingHTTPServer):
    """Threads die with the process and are not joined on close: a test must never hang on stop."""

    daemon_threads = True
    block_on_close = False
    hub: FakeHub

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet (clients may hang up mid-download); keep the traceback for debugging."""
        self.hub.errors.append(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive thread outlives stop().
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log; the hub keeps its own (method, path) log."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        hub = self.server.hub
        hub._log(self.command, self.path)
        try:
            self._route(hub)
        except _HubError as error:
            self._send_error(error)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            hub.errors.append(traceback.format_exc())
            self._send_error(_HubError(500, None, "Internal error in FakeHub"))

    def _route(self, hub: FakeHub) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        query = parse_qs(raw_query, keep_blank_values=True)
        segments = raw_path.split("/")[1:]
        # Segments are decoded one by one: a revision like 'refs/pr/1' arrives as 'refs%2Fpr%2F1'.
        parts = [unquote(segment) for segment in segments]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = f"{parts[2]}/{parts[3]}"
            rest = parts[4:]
            if self.command == "POST":
                if len(rest) == 2 and rest[0] == "paths-info":
                    self._send_json(self._paths_info(hub, repo_id, rest[1]))
                    return
            elif not rest or rest == [""]:
                self._send_json(hub._model_info(repo_id, "main", query))
                return
            elif rest[0] == "revision" and len(rest) == 2:
                self._send_json(hub._model_info(repo_id, rest[1], query))
                return
            elif rest[0] == "tree" and len(rest) >= 2:
                self._send_json(hub._tree(repo_id, rest[1], "/".join(rest[2:]), query))
                return
            elif rest == ["refs"]:
                self._send_json(hub._refs(repo_id))
                return
        elif len(parts) >= 5 and parts[2] == "resolve" and self.command in ("GET", "HEAD"):
            repo_id = f"{parts[0]}/{parts[1]}"
            authorized = bool(self.headers.get("Authorization"))
            _, body, headers = hub._resolve(repo_id, parts[3], "/".join(parts[4:]), authorized)
            self._send_file(body, headers)
            return
        raise _HubError(404, None, "Not Found")

    def _paths_info(self, hub: FakeHub, repo_id: str, revision: str) -> Any:
        """``HfApi.get_paths_info``: form-encoded ``paths`` (repeated) and ``expand``."""
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        listing = hub._tree(repo_id, revision, "", {"recursive": ["true"], **form})
        paths = {path.strip("/") for path in form.get("paths", [])}
        return [item for item in listing if item["path"] in paths]

    # -- answers -------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, headers: dict[str, str], content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in headers.items():
            self.send_header(name, _header_safe(value))
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload: Any) -> None:
        self._send(200, json.dumps(payload).encode(), {}, "application/json; charset=utf-8")

    def _send_error(self, error: _HubError) -> None:
        headers = dict(error.headers)
        if error.code:
            headers["X-Error-Code"] = error.code
        headers["X-Error-Message"] = error.message
        body = json.dumps({"error": error.message}).encode()
        self._send(error.status, body, headers, "application/json; charset=utf-8")

    def _send_file(self, body: bytes, headers: dict[str, str]) -> None:
        if self.command == "HEAD":
            # The metadata promise: the advertised size, even when GET will send mutated bytes.
            self._send(200, b"", {**headers, "Content-Length": headers["X-Linked-Size"]}, _OCTET)
            return
        total = len(body)
        match = _RANGE_RE.fullmatch((self.headers.get("Range") or "").strip())
        if match and (match.group(1) or match.group(2)):
            first, last = match.group(1), match.group(2)
            if first:
                start = int(first)
                end = min(int(last), total - 1) if last else total - 1
            else:  # suffix range: the last N bytes
                start, end = max(total - int(last), 0), total - 1
            if start >= total or (first and last and int(last) < start) or end < start:
                self._send(416, b"", {**headers, "Content-Range": f"bytes */{total}"}, _OCTET)
                return
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{total}"}
            self._send(206, body[start : end + 1], headers, _OCTET)
            return
        self._send(200, body, headers, _OCTET)

"""The Hugging Face-compatible endpoint: approved users pull versions with the real client.

Point ``HF_ENDPOINT`` (or ``endpoint=``) at ``https://<portal>/hf`` and send a portal access
token; ``huggingface_hub`` and ``transformers`` then download catalogue versions as if from the
Hub. The routes, headers and error codes follow shared/notes/hf-compatible-endpoint.md:

* ``GET api/models/<ns>/<name>[/revision/<rev>]`` model info (``sha`` plus ``siblings``),
* ``GET api/models/<ns>/<name>/tree/<rev>[/<folder>]`` the file listing, paged by ``Link``,
* ``GET api/models/<ns>/<name>/refs`` ``main`` and the version labels as tags,
* ``HEAD``/``GET <ns>/<name>/resolve/<rev>/<path>`` the bytes, with ``Range`` support,
* ``GET api/whoami-v2`` who the token belongs to.

A revision is ``main`` (the newest version of the model the caller may use), a version's 40-hex
commit or a version label (``v2``). Every route is gated the same way: a valid portal token, a
model the caller may see (else it answers like an unknown repo), and ``can_use_version`` on the
version. Blocked versions and blocked models are served to nobody. Each file GET writes a
``hub.download`` audit event before the first byte leaves.

Files are streamed from the artifact storage with ``FileResponse`` over the opened blob, so
the WSGI server may hand the descriptor to ``sendfile``; a bounded range reads only its bytes,
in chunks. Nothing here ever reads a whole file into memory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import mimetypes
import re
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.db import transaction
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from governance.access import can_use_version, versions_usable_by
from governance.audit import audit_record, audit_refusal
from governance.models import ACCESS_TOKEN_PREFIX, API_TOKEN_PREFIX
from governance.selectors import user_for_token
from portal.errors import Forbidden, NotFound, PortalError
from zoo.hub.files import HubFile, files_of, flag, iso, tree_oids
from zoo.models import CatalogModel, ModelVersion, ScanWaiver
from zoo.selectors.catalogue import models_visible_to

logger = logging.getLogger(__name__)

#: Entries per tree page, as the Hub caps them (fewer when each entry carries its last commit).
TREE_PAGE_SIZE = 1000
TREE_PAGE_SIZE_EXPANDED = 50
#: Read size when the server cannot sendfile (and for bounded ranges).
STREAM_BLOCK = 1 << 20

_COMMIT = re.compile(r"[0-9a-f]{40}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HubError(Exception):
    """An error answer the client maps to an exception by its ``X-Error-Code``."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        commit: str | None = None,
        target=None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit
        self.target = target


def _header_safe(text: str) -> str:
    """Header values are latin-1 and one line; repo ids and paths need not be."""
    return " ".join(text.encode("latin-1", "replace").decode("latin-1").split())


def _error_response(exc: HubError) -> HttpResponse:
    response = JsonResponse({"error": exc.message}, status=exc.status)
    if exc.code:
        response["X-Error-Code"] = exc.code
    response["X-Error-Message"] = _header_safe(exc.message)
    if exc.commit:
        response["X-Repo-Commit"] = exc.commit
    response["Cache-Control"] = "private, no-store"
    return response


def _record_refusal(request: HttpRequest, exc: HubError) -> None:
    """A signed-in caller refused a version is worth an audit line; the token never is."""
    user = getattr(request, "hub_user", None)
    if user is None:
        return
    audit_refusal(
        actor=user,
        verb="hub.refused",
        target=exc.target,
        method=request.method or "",
        path=request.path,
        reason=exc.message,
    )


def _refuse_control_characters(request: HttpRequest, parts: dict) -> None:
    """A NUL or other control character (``%00`` in the URL) names no repository, revision or
    file; refused before any lookup, and recorded against the caller if the token is good."""
    if not any(isinstance(v, str) and _CONTROL.search(v) for v in parts.values()):
        return
    with contextlib.suppress(HubError):  # an anonymous caller is told the same, unrecorded
        _authenticate(request)
    raise HubError(
        400,
        None,
        "The path holds a NUL or another control character; repository ids, revisions and "
        "file paths cannot contain one.",
    )


def hub_view(*methods: str):
    """Bearer-token views: no CSRF (no cookies are used), JSON errors, 405 for other methods."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = _error_response(
                    HubError(
                        405,
                        None,
                        f"{request.method} is not supported: the portal's Hugging Face "
                        "endpoint is read-only.",
                    )
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                _refuse_control_characters(request, kwargs)
                return view(request, *args, **kwargs)
            except HubError as exc:
                if exc.status in (400, 403):
                    _record_refusal(request, exc)
                return _error_response(exc)

        return wrapper

    return decorate


# --- who is asking, and for which version -----------------------------------------------------


def _tokens_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("tokens:list"))


def _authenticate(request: HttpRequest, repo_id: str | None = None):
    """The user behind ``Authorization: Bearer <portal token>``; 401 GatedRepo otherwise.

    The value is only ever compared, never logged, echoed or recorded: a foreign token
    (``hf_…``) is named as such without repeating it.
    """
    scheme, _, raw = request.headers.get("Authorization", "").strip().partition(" ")
    raw = raw.strip()
    what = f"Access to {repo_id} is restricted" if repo_id else "This endpoint needs a token"
    if scheme.lower() != "bearer" or not raw:
        raise HubError(
            401,
            "GatedRepo",
            f"{what}: send a portal access token (create one at {_tokens_url(request)}) "
            "as HF_TOKEN or token=.",
        )
    if raw.startswith(API_TOKEN_PREFIX):
        raise HubError(
            401,
            "GatedRepo",
            f"{what}: this is an API token ({API_TOKEN_PREFIX}...), which the REST API takes; "
            f"downloads take a read token ({ACCESS_TOKEN_PREFIX}...). Create one at "
            f"{_tokens_url(request)}.",
        )
    if not raw.startswith(ACCESS_TOKEN_PREFIX):
        raise HubError(
            401,
            "GatedRepo",
            f"{what}: the portal accepts only its own access tokens ({ACCESS_TOKEN_PREFIX}...), "
            f"not Hugging Face tokens. Create one at {_tokens_url(request)}.",
        )
    user = user_for_token(raw)
    if user is None:
        raise HubError(
            401,
            "GatedRepo",
            f"{what}: the access token is unknown, expired or revoked. "
            f"Create a new one at {_tokens_url(request)}.",
        )
    request.hub_user = user
    return user


def _model_for(user, namespace: str, name: str) -> CatalogModel:
    """A model the user may see; one they may not (a draft) answers like an unknown repo."""
    repo_id = f"{namespace}/{name}"
    model = models_visible_to(user).filter(repo_id=repo_id).first()
    if model is None:
        raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found.")
    return model


def usable_versions(user, model: CatalogModel):
    """The model's unblocked versions the user may pull, newest first."""
    return (
        versions_usable_by(user)
        .filter(model=model)
        .exclude(status=ModelVersion.Status.BLOCKED)
        .select_related("model")
        .order_by("-created_at", "-id")
    )


def _request_reuse_hint(request: HttpRequest, model: CatalogModel) -> str:
    url = request.build_absolute_uri(model.get_absolute_url())
    return f"Request reuse on {url} and download once it is approved."


def _resolve(request: HttpRequest, user, model: CatalogModel, revision: str) -> ModelVersion:
    """``main``, a 40-hex commit or a version label, checked against the gate."""
    if revision.startswith("refs/heads/"):
        revision = revision.removeprefix("refs/heads/")
    elif revision.startswith("refs/tags/"):
        revision = revision.removeprefix("refs/tags/")
    versions = list(model.versions.select_related("model").order_by("-created_at", "-id"))
    if model.status == CatalogModel.Status.BLOCKED:
        raise HubError(
            403,
            "GatedRepo",
            f"{model.repo_id} is blocked: {model.status_reason or 'no reason given'}. "
            "Its files are not served.",
            target=model,
        )
    if revision == "main":
        newest = usable_versions(user, model).first()
        if newest is not None:
            return newest
        if not versions:
            raise HubError(404, "RevisionNotFound", f"{model.repo_id} has no versions yet.")
        if all(v.is_blocked for v in versions):
            raise HubError(
                403,
                "GatedRepo",
                f"Every version of {model.repo_id} is blocked; none of its files are served.",
                target=model,
            )
        raise HubError(
            403,
            "GatedRepo",
            f"Access to {model.repo_id} is restricted: you hold no approved, unexpired reuse "
            f"request for any of its versions. {_request_reuse_hint(request, model)}",
            target=model,
        )
    field = "revision" if _COMMIT.fullmatch(revision) else "label"
    version = next((v for v in versions if getattr(v, field) == revision), None)
    if version is None:
        raise HubError(
            404,
            "RevisionNotFound",
            f"Revision {revision!r} not found in {model.repo_id}: use main, a version label "
            "(v1, v2, ...) or a version's 40-hex revision.",
        )
    if version.is_blocked:
        raise HubError(
            403,
            "GatedRepo",
            f"{model.repo_id} {version.label} is blocked: "
            + ("; ".join(version.block_reasons) or "no reason given")
            + ". Its files are not served.",
            target=version,
        )
    if not can_use_version(user, version):
        raise HubError(
            403,
            "GatedRepo",
            f"Access to {model.repo_id} {version.label} is restricted: you hold no approved, "
            f"unexpired reuse request for it. {_request_reuse_hint(request, model)}",
            target=version,
        )
    return version


def _gate(request: HttpRequest, namespace: str, name: str, revision: str):
    user = _authenticate(request, f"{namespace}/{name}")
    model = _model_for(user, namespace, name)
    return user, model, _resolve(request, user, model, revision)


# --- what a version's files look like to git -----------------------------------------------


# --- JSON routes -------------------------------------------------------------------------------


@hub_view("GET", "HEAD")
def index(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "service": "Model Zoo Portal, Hugging Face-compatible endpoint",
            "usage": "Set HF_ENDPOINT to this URL and HF_TOKEN to a portal access token.",
            "tokens": _tokens_url(request),
        }
    )


@hub_view("GET", "HEAD")
def whoami(request: HttpRequest) -> HttpResponse:
    user = _authenticate(request)
    return JsonResponse(
        {
            "type": "user",
            "id": str(user.pk),
            "name": user.get_username(),
            "fullname": user.get_full_name() or user.get_username(),
            "email": user.email or None,
            "orgs": [],
            "auth": {"type": "access_token", "accessToken": {"role": "read"}},
        }
    )


@hub_view("GET", "HEAD")
def model_info(
    request: HttpRequest, namespace: str, name: str, revision: str = "main"
) -> HttpResponse:
    _, model, version = _gate(request, namespace, name, revision)
    card = version.card_metadata if isinstance(version.card_metadata, dict) else {}
    tags = [t for t in card.get("tags") or [] if isinstance(t, str)]
    tags.append(f"license:{version.license.spdx_id}")
    siblings = []
    for f in files_of(version):
        sibling = {"rfilename": f.path, "size": f.size, "blobId": f.oid}
        if f.lfs:
            sibling["lfs"] = f.lfs_block("sha256")
        siblings.append(sibling)
    info = {
        "_id": str(model.pk),
        "id": model.repo_id,
        "modelId": model.repo_id,
        "author": model.namespace,
        "sha": version.revision,
        "lastModified": iso(version.created_at),
        "createdAt": iso(model.created_at),
        "private": False,
        "gated": "manual",
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": tags,
        "cardData": card,
        "siblings": siblings,
        "spaces": [],
        "usedStorage": version.total_size,
    }
    if model.task:
        info["pipeline_tag"] = model.task
    if isinstance(card.get("library_name"), str):
        info["library_name"] = card["library_name"]
    return JsonResponse(info)


@hub_view("GET", "HEAD")
def refs(request: HttpRequest, namespace: str, name: str) -> HttpResponse:
    """``main`` and the labels of the versions the caller may use, as git tags."""
    user, model, main = _gate(request, namespace, name, "main")
    usable = list(reversed(usable_versions(user, model)))

    def ref(kind: str, label: str, commit: str) -> dict:
        return {"name": label, "ref": f"refs/{kind}/{label}", "targetCommit": commit}

    body = {
        "branches": [ref("heads", "main", main.revision)],
        "converts": [],
        "tags": [ref("tags", v.label, v.revision) for v in usable],
    }
    if flag(request.GET.get("include_prs")):
        body["pullRequests"] = []
    return JsonResponse(body)


@hub_view("GET", "HEAD")
def tree(
    request: HttpRequest, namespace: str, name: str, revision: str, subpath: str | None = None
) -> HttpResponse:
    _, model, version = _gate(request, namespace, name, revision)
    folder = (subpath or "").strip("/")
    recursive = flag(request.GET.get("recursive"))
    expand = flag(request.GET.get("expand"))
    files = files_of(version)
    folders = tree_oids(files)
    if folder and folder not in folders:
        raise HubError(
            404,
            "EntryNotFound",
            f"{folder} does not exist in {model.repo_id} {version.label}.",
            commit=version.revision,
        )
    prefix = f"{folder}/" if folder else ""

    def listed(path: str) -> bool:
        return path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])

    entries: list[dict] = [
        {"type": "directory", "oid": folders[d], "size": 0, "path": d}
        for d in sorted(folders)
        if d and listed(d)
    ]
    for f in files:
        if listed(f.path):
            entry = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
            if f.lfs:
                entry["lfs"] = f.lfs_block("oid")
            entries.append(entry)
    try:
        start = int(request.GET.get("cursor") or 0)
    except ValueError:
        start = -1
    if start < 0:
        raise HubError(400, None, "The cursor must be a non-negative integer.")
    size = TREE_PAGE_SIZE_EXPANDED if expand else TREE_PAGE_SIZE
    page = entries[start : start + size]
    if expand:
        last_commit = {
            "id": version.revision,
            "title": version.label,
            "date": iso(version.created_at),
        }
        for entry in page:
            entry["lastCommit"] = last_commit
    response = JsonResponse(page, safe=False)
    if start + size < len(entries):
        query = request.GET.copy()
        query["cursor"] = str(start + size)
        url = request.build_absolute_uri(f"{request.path}?{urlencode(sorted(query.items()))}")
        response["Link"] = f'<{url}>; rel="next"'
    response["X-Repo-Commit"] = version.revision
    return response


@hub_view("GET", "HEAD")
def not_a_model(request: HttpRequest, kind: str, rest: str = "") -> HttpResponse:
    raise HubError(404, "RepoNotFound", f"The portal serves models only, not {kind}.")


@hub_view("GET", "HEAD")
def unknown_route(request: HttpRequest, rest: str = "") -> HttpResponse:
    raise HubError(
        404, None, f"No such route on the portal's Hugging Face endpoint: {request.path}"
    )


# --- file bytes --------------------------------------------------------------------------------


class _Window:
    """The bytes [start, start + length) of an open file, read in chunks on demand.

    It deliberately has no ``fileno``: a server's sendfile would send the rest of the
    file, not the window. Reads never return more than STREAM_BLOCK bytes at once.
    """

    def __init__(self, handle, start: int, length: int) -> None:
        handle.seek(start)
        self._handle = handle
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = STREAM_BLOCK if size is None or size < 0 else size
        data = self._handle.read(min(want, self._left, STREAM_BLOCK))
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._handle.close()


def _byte_range(request: HttpRequest, total: int, etag: str) -> tuple[int, int] | None:
    """The one range asked for, as (first, last) inclusive; None for the whole file.

    A header that is not a single ``bytes=`` range is ignored, as HTTP allows; a range
    that starts past the end raises 416.
    """
    header = request.headers.get("Range", "").strip()
    if not header:
        return None
    if_range = request.headers.get("If-Range", "").strip()
    if if_range and if_range.strip('"') != etag:
        return None  # the client holds another version of the file: send it whole
    match = _RANGE.fullmatch(header)
    if match is None or not (match.group(1) or match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        end = min(int(last), total - 1) if last else total - 1
        if last and int(last) < start:
            return None  # syntactically invalid: ignored
    else:  # a suffix: the last N bytes
        start, end = max(total - int(last), 0), total - 1
        if int(last) == 0:
            start = total
    if start >= total:
        raise HubError(
            416, None, f"Range {header} starts past the end of the file ({total} bytes)."
        )
    return start, end


def _content_type(path: str) -> str:
    guessed, encoding = mimetypes.guess_type(path.rsplit("/", 1)[-1])
    return "application/octet-stream" if encoding or not guessed else guessed


@hub_view("GET", "HEAD")
def resolve(request: HttpRequest, namespace: str, name: str, revision: str, path: str):
    user, model, version = _gate(request, namespace, name, revision)
    return _serve(request, user, model, version, path)


@login_required
@require_GET
def browser_download(request: HttpRequest, namespace: str, name: str, label: str, path: str):
    """The version page's per-file links for a signed-in browser: the same gate, scan
    check, headers and ``hub.download`` event as the client's downloads; refusals are
    pages, not JSON."""
    request.hub_user = request.user
    try:
        _refuse_control_characters(request, {"path": path})
        model = _model_for(request.user, namespace, name)
        version = _resolve(request, request.user, model, label)
        return _serve(request, request.user, model, version, path)
    except HubError as exc:
        if exc.status in (400, 403):
            _record_refusal(request, exc)
        raise {403: Forbidden, 404: NotFound}.get(exc.status, PortalError)(exc.message) from None


def _serve(request: HttpRequest, user, model: CatalogModel, version: ModelVersion, path: str):
    artifact = version.artifacts.filter(path=path).first()
    if artifact is None:
        raise HubError(
            404,
            "EntryNotFound",
            f"{path} is not a file of {model.repo_id} {version.label}.",
            commit=version.revision,
        )
    if artifact.blocks and not ScanWaiver.objects.live().filter(sha256=artifact.sha256).exists():
        # Checked at each download, so a waiver that has just expired or been revoked
        # stops the file at once, before beat re-blocks the version.
        raise HubError(
            403,
            "GatedRepo",
            f"{path} of {model.repo_id} {version.label} is {artifact.get_scan_status_display()} "
            "by its scan and has no waiver in force; it is not served.",
            target=version,
        )
    f = HubFile.of(artifact)
    headers = {
        "X-Repo-Commit": version.revision,
        "ETag": f'"{f.etag}"',
        "X-Linked-Etag": f'"{f.etag}"',
        "X-Linked-Size": str(f.size),
        "Accept-Ranges": "bytes",
        # Per-user answers: no shared cache may keep them, no proxy may re-encode them.
        "Cache-Control": "private, no-transform",
        "Vary": "Authorization",
        # Uploaded bytes are never a page of the portal: a browser saves them, never
        # renders them (an .html or .svg in a repository would otherwise run here).
        "Content-Disposition": content_disposition_header(
            as_attachment=True, filename=f.path.rsplit("/", 1)[-1]
        ),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }
    content_type = _content_type(f.path)
    if settings.HUB_REDIRECT_DOWNLOADS and hasattr(default_storage, "presigned_url"):
        return _redirect(request, user, version, f, model, headers)
    if request.method == "HEAD":
        response = HttpResponse(status=200, content_type=content_type)
        # Set here: CommonMiddleware would write the empty body's length (0).
        response["Content-Length"] = str(f.size)
        return _with_headers(response, headers)
    try:
        window = _byte_range(request, f.size, f.etag)
    except HubError as exc:
        response = _error_response(exc)
        response["Content-Range"] = f"bytes */{f.size}"
        return _with_headers(response, headers)
    handle, exact = _open_blob(f, model, window)
    try:
        with transaction.atomic():
            audit_record(
                actor=user,
                verb="hub.download",
                target=version,
                payload={
                    "path": f.path,
                    "sha256": f.sha256,
                    "range": f"bytes={window[0]}-{window[1]}" if window else None,
                },
            )
    except BaseException:
        handle.close()
        raise
    if exact:
        return _with_headers(_stream_response(handle, f, window, content_type), headers)
    return _with_headers(_file_response(handle, f, window, content_type), headers)


def _redirect(request: HttpRequest, user, version, f: HubFile, model, headers: dict[str, str]):
    """302 to a short-lived presigned bucket URL, the Hub's own shape for LFS files.

    The client reads the commit, etag and size from this first answer (it never
    sends a HEAD to the bucket) and drops its token before following a
    redirect to another host, so the headers stay here and the URL is the
    only key. Handing out that key is the download, so every redirect is
    recorded, HEAD too: the client fetches from the Location its HEAD got and
    never sends the portal a GET.
    """
    if _stored_size(f, model) != f.size:
        raise _damaged(f, model)
    response = HttpResponse(status=302)
    response["Location"] = default_storage.presigned_url(
        f.blob_name, expire=settings.HUB_REDIRECT_EXPIRY_S, filename=f.path.rsplit("/", 1)[-1]
    )
    response["Content-Length"] = "0"
    headers = {k: v for k, v in headers.items() if k not in {"Accept-Ranges"}}
    with transaction.atomic():
        audit_record(
            actor=user,
            verb="hub.download",
            target=version,
            payload={"path": f.path, "sha256": f.sha256, "range": None, "redirect": True},
        )
    return _with_headers(response, headers)


def _with_headers(response: HttpResponse, headers: dict[str, str]) -> HttpResponse:
    for key, value in headers.items():
        response[key] = value
    return response


def _open_blob(f: HubFile, model: CatalogModel, window):
    """The stored file, if it is there and of its recorded size: a damaged copy is never sent.

    Returns the handle and whether it already holds exactly the bytes to send: a
    bucket is asked for just the window (one ranged GET, streamed), a local file
    is opened whole and positioned by the response.
    (The size is checked on every download; the full hash is checked when the
    blob is written, and whenever a worker copies it out.)
    """
    if _stored_size(f, model) != f.size:
        raise _damaged(f, model)
    ranged = getattr(default_storage, "open_range", None)
    try:
        if ranged is not None:
            if window is None:
                return ranged(f.blob_name), True
            return ranged(f.blob_name, start=window[0], length=window[1] - window[0] + 1), True
        return default_storage.open(f.blob_name, "rb"), False
    except FileNotFoundError:
        raise _missing(f, model) from None


def _stored_size(f: HubFile, model: CatalogModel) -> int:
    try:
        return default_storage.size(f.blob_name)
    except FileNotFoundError:
        raise _missing(f, model) from None


def _missing(f: HubFile, model: CatalogModel) -> HubError:
    logger.error("Blob %s of %s %s is missing from storage", f.blob_name, model, f.path)
    return HubError(
        500, None, f"The stored copy of {f.path} is missing; a steward has to re-import it."
    )


def _damaged(f: HubFile, model: CatalogModel) -> HubError:
    logger.error("Blob %s of %s %s does not have %s bytes", f.blob_name, model, f.path, f.size)
    return HubError(
        500, None, f"The stored copy of {f.path} is damaged; a steward has to re-import it."
    )


def _stream_response(stream, f: HubFile, window, content_type: str) -> FileResponse:
    """Bytes read from the bucket exactly as asked; the length is known from the window."""
    filename = f.path.rsplit("/", 1)[-1]
    status = 200 if window is None else 206
    response = FileResponse(stream, status=status, content_type=content_type, filename=filename)
    response.block_size = STREAM_BLOCK
    if window is None:
        response["Content-Length"] = str(f.size)
    else:
        response["Content-Length"] = str(window[1] - window[0] + 1)
        response["Content-Range"] = f"bytes {window[0]}-{window[1]}/{f.size}"
    return response


def _file_response(handle, f: HubFile, window, content_type: str) -> FileResponse:
    """The whole file, or the one range asked for, streamed from the open blob."""
    filename = f.path.rsplit("/", 1)[-1]
    if window is None:
        response = FileResponse(handle, content_type=content_type, filename=filename)
    elif window[1] == f.size - 1:
        # Open-ended (what a resuming client sends): the real file, positioned, so the
        # server may still sendfile it; FileResponse counts the length from the position.
        handle.seek(window[0])
        response = FileResponse(handle, status=206, content_type=content_type, filename=filename)
    else:
        length = window[1] - window[0] + 1
        response = FileResponse(
            _Window(handle, window[0], length),
            status=206,
            content_type=content_type,
            filename=filename,
        )
        response["Content-Length"] = str(length)
    response.block_size = STREAM_BLOCK
    if window is not None:
        response["Content-Range"] = f"bytes {window[0]}-{window[1]}/{f.size}"
    return response

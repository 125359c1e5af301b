"""Catalogue search and lists over HTTP: the portal against MLflow's model registry server.

Both systems hold the same catalogue from ``bench/_catalogue_data.py`` (20,000 model
names and 100,000 versions by default, the same tags), each on its own PostgreSQL
database, each served by its own server with 2 worker processes on loopback:

- the portal under gunicorn as docker-compose.yml runs it (gthread workers, 8 threads
  each; ``--portal-threads 1`` gives sync workers), production settings, Redis cache;
- MLflow's registry with ``mlflow server`` (uvicorn), its access log off as gunicorn's is
  and its background job runner off, so neither server spends time the other does not.

The same loader, wrk, drives both for a fixed time at 1 and 8 clients, rotating through
the same query strings per kind, and the table prints requests per second, the ratio
portal / MLflow (above 1 means the portal serves more) and p50/p95 latency per kind:

==========================  ==============================  ================================
kind                        portal                          MLflow (REST API 2.0)
==========================  ==============================  ================================
one word, catalogue page    /catalogue/?q=W (session)       registered-models/search,
                                                            name ILIKE '%W%', 20 results
one word / rare / two       /api/models/?q=... (API token)  name ILIKE '%a%' [AND name
words / typo, API                                           ILIKE '%b%'], 50 results
tag                         /api/models/?domain=T           tags.`T` = 'true', 50 results
first page                  /api/models/                    registered-models/search, 50
version list                /api/versions/                  model-versions/search, 50
one model                   /api/models/<id>/               registered-models/get?name=
==========================  ==============================  ================================

MLflow's own UI searches names with ILIKE, so its searches see names only (a rare word
or a typo finds nothing there) while the portal searches names, summaries, tags and
cards; the "rows" column shows what each returned. In MLflow a model's name is its
repo id with a dot for the slash (MLflow refuses "/" in names), its tags are one
registry tag each (key = the tag, value "true"), plus "modality" and "task" tags, its
description is the summary, and each version carries "license" and "revision" tags.
The MLflow data is loaded with COPY straight into the tables ``mlflow db upgrade``
creates (100,000 versions through its REST API would take far longer than the
benchmark) and read back through the REST API before any load runs. A last section
has no MLflow counterpart: the model detail page at 16 clients, and its SQL queries per
page, counted in process.

wrk keeps connections alive, as browsers and MLflow's own client do. MLflow's uvicorn
workers then stall each response for the client's delayed ACK (about 40 ms: with more
than one worker their sockets lack TCP_NODELAY), which dominates its latency at one
client; the settings line shows that round trip for both servers, and
``--connection-close`` runs everything with a new connection per request instead.

Usage: .venv/bin/python bench/registry_vs_mlflow.py [--models 20000] [--versions-per-model 5]
       [--duration 10] [--clients 1,8] [--detail-clients 16] [--connection-close] [--skip-seed]
Small, for trying it out: --models 1000 --duration 3.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth; databases from
BENCH_HTTP_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/portal_bench_http, and
BENCH_MLFLOW_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/mlflow_bench, created,
migrated and seeded on the first run and reused while they hold the requested sizes), Redis
database 10 on 127.0.0.1:6379 (BENCH_CACHE_URL; emptied at the start), ``wrk``
(``apt-get install -y wrk``) and MLflow: when it is missing the script installs the
project's ``bench`` extra into its own interpreter's environment first
(``python -m pip install -e .[bench]``; ``make install`` does not).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import random
import runpy
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._catalogue_data import ModelRecord, production_environment, queries, records  # noqa: E402

BIN = Path(sys.executable).parent
# The deployed server's settings (read as a file: importing ``portal`` would start Django's apps).
DEPLOYED = runpy.run_path(str(ROOT / "portal" / "gunicorn.py"))
WORKERS = 2
MLFLOW_PAGE = "/api/2.0/mlflow/registered-models/search"
MLFLOW_VERSIONS = "/api/2.0/mlflow/model-versions/search"
MLFLOW_GET = "/api/2.0/mlflow/registered-models/get"
BASE_TIME_MS = 1_700_000_000_000

# wrk's own "Non-2xx or 3xx" count lets redirects through (a lost session is a 302 to
# the sign-in page), so the script counts every status but 200 itself.
WRK_SCRIPT = r"""
local threads = {}
local count = 0

function setup(thread)
  count = count + 1
  thread:set("id", count)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  index = (id * 7919) % #paths
  bad = 0
  first_bad = 0
end

function request()
  index = index % #paths + 1
  return wrk.format("GET", paths[index])
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if first_bad == 0 then first_bad = status end
  end
end

function done(summary, latency, requests)
  local bad_total, first = 0, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    if first == 0 then first = t:get("first_bad") end
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p95_us": %.0f, ' ..
    '"p99_us": %.0f, "bad": %d, "first_bad": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), bad_total, first, e.connect, e.read, e.write, e.timeout))
end
"""


@dataclass
class Kind:
    name: str
    portal: list[str]
    mlflow: list[str] | None
    html: bool = False  # the portal's pages take the session cookie, the API a token


@dataclass
class Load:
    rps: float
    p50: float
    p95: float
    p99: float


# --- setting up -------------------------------------------------------------------------


def _ensure_tools() -> None:
    """Install MLflow on first use: it is a large optional dependency only this script needs."""
    if importlib.util.find_spec("mlflow") is None or not (BIN / "mlflow").exists():
        command = [sys.executable, "-m", "pip", "install", "-e", f"{ROOT}[bench]"]
        print("MLflow is not installed; running:", " ".join(command), flush=True)
        subprocess.run(command, check=True)
        importlib.invalidate_caches()
        if importlib.util.find_spec("mlflow") is None:
            sys.exit("MLflow is still not importable after installing the bench extra.")
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")


def _connect(url: str, dbname: str | None = None, **kwargs):
    import psycopg

    parts = urlsplit(url)
    return psycopg.connect(
        host=parts.hostname, port=parts.port or 5432, user=parts.username or "postgres",
        password=parts.password, dbname=dbname or parts.path.lstrip("/"), **kwargs,
    )  # fmt: skip


def _create_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with _connect(url, "postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _sqlalchemy_url(url: str) -> str:
    """MLflow goes through SQLAlchemy; psycopg 3 is the driver the project already has."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def _mlflow_name(record: ModelRecord) -> str:
    """MLflow refuses "/" in a model name, so a dot parts the namespace from the name."""
    return record.repo_id.replace("/", ".")


def _setup_portal(database_url: str, cache_url: str, n_models: int, per_model: int, seed: bool):
    os.environ.update(production_environment(database_url), CACHE_URL=cache_url)
    from bench._database import create_and_migrate

    create_and_migrate(database_url)
    from django.core.cache import cache
    from django.core.management import call_command

    # Production settings serve hashed static files: build the manifest they read.
    call_command("collectstatic", interactive=False, verbosity=0)
    cache.clear()  # FLUSHDB on the benchmark's own Redis database, nothing shared
    if seed:
        from bench._catalogue_data import seed_portal

        seed_portal(n_models, per_model)


def _seed_mlflow(url: str, catalogue: list[ModelRecord], per_model: int) -> None:
    """Load the catalogue into MLflow's registry tables, unless they already hold its size."""
    with _connect(url) as conn:
        models = conn.execute("SELECT count(*) FROM registered_models").fetchone()[0]
        versions = conn.execute("SELECT count(*) FROM model_versions").fetchone()[0]
        last = conn.execute(
            "SELECT description FROM registered_models WHERE name = %s",
            (_mlflow_name(catalogue[-1]),),
        ).fetchone()
        if (
            models == len(catalogue)
            and versions == len(catalogue) * per_model
            and last == (catalogue[-1].summary,)
        ):
            return
        print(f"seeding MLflow: {len(catalogue):,} models x {per_model} versions ...", flush=True)
        started = time.perf_counter()
        conn.execute(
            "TRUNCATE registered_model_aliases, model_version_tags, model_versions, "
            "registered_model_tags, registered_models CASCADE"
        )
        with conn.cursor() as cur:
            with cur.copy(
                "COPY registered_models (name, creation_time, last_updated_time, description) "
                "FROM STDIN"
            ) as copy:
                for r in catalogue:
                    created = BASE_TIME_MS + r.index * 1000
                    copy.write_row((_mlflow_name(r), created, created + per_model, r.summary))
            with cur.copy(
                "COPY registered_model_tags (name, key, value) FROM STDIN"
            ) as copy:  # fmt: skip
                for r in catalogue:
                    for tag in r.tags:
                        copy.write_row((_mlflow_name(r), tag, "true"))
                    copy.write_row((_mlflow_name(r), "modality", r.modality))
                    copy.write_row((_mlflow_name(r), "task", r.task))
            with cur.copy(
                "COPY model_versions (name, version, creation_time, last_updated_time, "
                "user_id, current_stage, source, status) FROM STDIN"
            ) as copy:
                for r in catalogue:
                    for number, v in enumerate(r.versions, start=1):
                        created = BASE_TIME_MS + r.index * 1000 + number
                        copy.write_row(
                            (
                                _mlflow_name(r), number, created, created, "bench-steward", "None",
                                f"s3://model-zoo/{r.repo_id}/{v.revision}", "READY",
                            )
                        )  # fmt: skip
            with cur.copy(
                "COPY model_version_tags (name, version, key, value) FROM STDIN"
            ) as copy:  # fmt: skip
                for r in catalogue:
                    for number, v in enumerate(r.versions, start=1):
                        copy.write_row((_mlflow_name(r), number, "license", v.license))
                        copy.write_row((_mlflow_name(r), number, "revision", v.revision))
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
    print(f"seeded MLflow in {time.perf_counter() - started:.1f}s", flush=True)


def _setup_mlflow(url: str, catalogue: list[ModelRecord], per_model: int, seed: bool) -> None:
    _create_database(url)
    subprocess.run(
        [str(BIN / "mlflow"), "db", "upgrade", _sqlalchemy_url(url)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if seed:
        _seed_mlflow(url, catalogue, per_model)


def _credentials() -> tuple[str, str, object]:
    """A session cookie for the pages and an API token for the API, as a browser and a script
    would send them; returns (cookie header, token, cleanup)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )

    from governance.models import AccessToken
    from governance.services.tokens import access_token_create

    user = get_user_model().objects.get(username="bench-steward")
    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    token, plaintext = access_token_create(
        user=user, name="bench/registry_vs_mlflow.py", days=1, scope=AccessToken.Scope.API
    )

    def cleanup() -> None:
        session.delete()
        AccessToken.objects.filter(pk=token.pk).delete()

    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}", plaintext, cleanup


# --- the servers ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _server(name: str, command: list[str], env: dict, cwd: Path, log: Path, probe: str):
    """Run a server in its own process group until the block ends, however it ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_for(name, proc, probe, log)
        yield proc
    except BaseException:
        # The log goes with the temporary folder: show what the server said about the failure.
        print(f"--- {name}'s log, last lines:\n{log.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_for(name: str, proc: subprocess.Popen, url: str, log: Path) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            conn = HTTPConnection(parts.hostname, parts.port, timeout=5)
            conn.request("GET", parts.path)
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"{name} did not answer {url} within 180 s:\n{log.read_text()[-3000:]}")


def _round_trips(port: int, path: str) -> tuple[float, float]:
    """Median ms of a trivial request on one kept-alive connection, and on a new one each time.

    A server that writes a response in two segments with Nagle's algorithm on waits for
    the client's delayed ACK (40 ms on Linux) on every kept-alive request; uvicorn with
    more than one worker does (its workers' sockets miss TCP_NODELAY). That stall is no
    part of searching, so the script shows it beside the figures it inflates.
    """
    kept, fresh = [], []
    conn = HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(21):
        started = time.perf_counter()
        conn.request("GET", path)
        conn.getresponse().read()
        kept.append((time.perf_counter() - started) * 1000)
    conn.close()
    for _ in range(21):
        started = time.perf_counter()
        _get(port, path, {})
        fresh.append((time.perf_counter() - started) * 1000)
    return statistics.median(kept[1:]), statistics.median(fresh[1:])


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- queries ------------------------------------------------------------------------------


def _mlflow_search(filter_: str | None, max_results: int) -> str:
    params: dict[str, object] = {} if filter_ is None else {"filter": filter_}
    params["max_results"] = max_results
    return f"{MLFLOW_PAGE}?{urlencode(params, quote_via=quote)}"


def _ilike(words: str) -> str:
    return " AND ".join(f"name ILIKE '%{w}%'" for w in words.split())


def _kinds(n_models: int, count: int, catalogue: list[ModelRecord], ids: dict[str, int]):
    q = queries(n_models, count)
    rng = random.Random(13)
    picked = [catalogue[i] for i in rng.sample(range(len(catalogue)), min(count, len(catalogue)))]

    def api(strings: list[str]) -> list[str]:
        return [f"/api/models/?{urlencode({'q': s}, quote_via=quote)}" for s in strings]

    kinds = [
        Kind(
            "one word, catalogue page",
            [f"/catalogue/?{urlencode({'q': w}, quote_via=quote)}" for w in q["one word, common"]],
            [_mlflow_search(_ilike(w), 20) for w in q["one word, common"]],
            html=True,
        ),
        Kind(
            "one word, API",
            api(q["one word, common"]),
            [_mlflow_search(_ilike(w), 50) for w in q["one word, common"]],
        ),
    ]
    for name in ("one word, rare", "two words", "typo in a name"):
        kinds.append(Kind(name, api(q[name]), [_mlflow_search(_ilike(s), 50) for s in q[name]]))
    kinds += [
        Kind(
            "tag",
            [f"/api/models/?{urlencode({'domain': t})}" for t in q["tag"]],
            [_mlflow_search(f"tags.`{t}` = 'true'", 50) for t in q["tag"]],
        ),
        Kind("first page", ["/api/models/"], [_mlflow_search(None, 50)]),
        Kind("version list", ["/api/versions/"], [f"{MLFLOW_VERSIONS}?max_results=50"]),
        Kind(
            "one model",
            [f"/api/models/{ids[r.repo_id]}/" for r in picked],
            [
                f"{MLFLOW_GET}?{urlencode({'name': _mlflow_name(r)}, quote_via=quote)}"
                for r in picked
            ],
        ),
    ]
    detail = Kind("model detail page", [f"/catalogue/{r.repo_id}/" for r in picked], None, True)
    return kinds, detail


def _rows(body: bytes, html: bool) -> int | None:
    """How many entries a response carries, so a fast empty answer shows as one."""
    if html:
        return None
    data = json.loads(body)
    for key in ("results", "registered_models", "model_versions"):
        if key in data:
            return len(data[key])
    if "registered_model" in data or "id" in data:
        return 1
    return 0  # MLflow leaves an empty list out of its JSON


def _check(port: int, paths: list[str], headers: dict[str, str], html: bool, label: str):
    """Fetch some paths once (warming both servers alike); every answer must be a 200."""
    counts = []
    for path in paths[:20]:
        status, body = _get(port, path, headers)
        if status != 200:
            sys.exit(f"{label}: GET {path} answered {status}: {body[:500]!r}")
        counts.append(_rows(body, html))
    known = [c for c in counts if c is not None]
    return statistics.mean(known) if known else None


def _verify_mlflow(port: int, catalogue: list[ModelRecord], per_model: int) -> None:
    """The rows loaded behind MLflow's back must read back through its REST API as expected."""

    def fetch(path: str) -> dict:
        status, body = _get(port, path, {})
        if status != 200:
            sys.exit(f"MLflow: GET {path} answered {status}: {body[:500]!r}")
        return json.loads(body)

    def search_all(filter_: str) -> int:
        total, token = 0, None
        while True:
            path = _mlflow_search(filter_, 1000)
            if token:
                path += f"&page_token={quote(token)}"
            data = fetch(path)
            total += len(data.get("registered_models", []))
            token = data.get("next_page_token")
            if not token:
                return total

    r = catalogue[len(catalogue) // 2]
    model = fetch(f"{MLFLOW_GET}?{urlencode({'name': _mlflow_name(r)}, quote_via=quote)}")
    model = model["registered_model"]
    tags = {t["key"]: t["value"] for t in model.get("tags", [])}
    wanted = {**dict.fromkeys(r.tags, "true"), "modality": r.modality, "task": r.task}
    _expect(model.get("description") == r.summary, f"description of {r.repo_id}: {model}")
    _expect(tags == wanted, f"tags of {r.repo_id}: {tags}, not {wanted}")
    latest = [v["version"] for v in model.get("latest_versions", [])]
    _expect(latest == [str(per_model)], f"latest versions of {r.repo_id}: {latest}")
    by_name = urlencode({"filter": f"name = '{_mlflow_name(r)}'"}, quote_via=quote)
    versions = fetch(f"{MLFLOW_VERSIONS}?{by_name}").get("model_versions", [])
    _expect(len(versions) == per_model, f"versions of {r.repo_id}: {versions}")
    word = r.tags[0]
    for filter_, expected in (
        (_ilike(word), sum(word in m.repo_id.lower() for m in catalogue)),
        (f"tags.`{word}` = 'true'", sum(word in m.tags for m in catalogue)),
    ):
        found = search_all(filter_)
        _expect(found == expected, f"MLflow search {filter_!r}: {found} models, not {expected}")


def _expect(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"MLflow does not read back what was loaded: {message}")


# --- load ---------------------------------------------------------------------------------


def _wrk(
    port: int, paths: list[str], headers: dict[str, str], clients: int, duration: int, work: Path
) -> Load:
    paths_file = work / f"paths-{port}-{clients}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    command = [
        "wrk",
        f"-t{min(clients, 2)}",
        f"-c{clients}",
        f"-d{duration}s",
        "--timeout=60s",
        f"-s{work / 'rotate.lua'}",
        *(arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")),
        f"http://127.0.0.1:{port}/",
    ]
    done = subprocess.run(
        command, env={**os.environ, "BENCH_PATHS": str(paths_file)}, capture_output=True, text=True
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        sys.exit(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    r = json.loads(line.removeprefix("RESULT "))
    errors = {k: r[k] for k in ("connect", "read", "write", "timeout") if r[k]}
    if r["bad"] or errors or not r["requests"]:
        sys.exit(
            f"port {port}, {clients} clients, {paths[0]} ...: {r['requests']} requests, "
            f"{r['bad']} not 200 (first: {r['first_bad']}), socket errors {errors}"
        )
    return Load(
        rps=r["requests"] / (r["duration_us"] / 1e6),
        p50=r["p50_us"] / 1000,
        p95=r["p95_us"] / 1000,
        p99=r["p99_us"] / 1000,
    )


def _detail_queries(paths: list[str]) -> list[int]:
    """SQL queries per model page, counted in process: what the page costs the database."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-steward"))
    counts = []
    for path in paths[:20]:
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        counts.append(len(ctx.captured_queries))
    client.logout()
    return counts


def _table(
    results: dict[tuple[str, int], tuple[Load, Load]],
    rows: dict[str, tuple[float | None, float | None]],
    kinds: list[Kind],
    clients: list[int],
) -> Iterator[str]:
    yield (
        f"{'':26} {'clients':>7} {'portal/s':>9} {'MLflow/s':>9} {'ratio':>7} "
        f"{'portal p50/p95 ms':>18} {'MLflow p50/p95 ms':>18}  rows portal/MLflow"
    )
    for kind in kinds:
        for i, c in enumerate(clients):
            portal, mlflow = results[kind.name, c]
            label = kind.name if i == 0 else ""
            if i == 0:
                shown = ["page" if v is None else f"{v:.1f}" for v in rows[kind.name]]
                rows_text = "/".join(shown)
            else:
                rows_text = ""
            yield (
                f"{label:26} {c:7d} {portal.rps:9.1f} {mlflow.rps:9.1f} "
                f"{portal.rps / mlflow.rps:6.2f}x "
                f"{f'{portal.p50:.1f}/{portal.p95:.1f}':>18} "
                f"{f'{mlflow.p50:.1f}/{mlflow.p95:.1f}':>18}  {rows_text}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=20_000)
    parser.add_argument("--versions-per-model", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10, help="seconds per load run")
    parser.add_argument("--clients", default="1,8", help="comma-separated concurrent clients")
    parser.add_argument("--detail-clients", type=int, default=16)
    parser.add_argument("--paths", type=int, default=100, help="query strings rotated per kind")
    parser.add_argument(
        "--portal-threads",
        type=int,
        default=DEPLOYED["threads"],
        help="threads per gunicorn worker (portal/gunicorn.py's by default); 1: sync",
    )
    parser.add_argument(
        "--connection-close",
        action="store_true",
        help="a new connection per request (no keep-alive) for both servers",
    )
    parser.add_argument(
        "--skip-seed", action="store_true", help="use both databases as they are, whatever size"
    )
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    portal_db = os.environ.get(
        "BENCH_HTTP_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench_http"
    )
    mlflow_db = os.environ.get(
        "BENCH_MLFLOW_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mlflow_bench"
    )
    cache_url = os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/10")

    _ensure_tools()
    seed = not args.skip_seed
    _setup_portal(portal_db, cache_url, args.models, args.versions_per_model, seed)
    catalogue = list(records(args.models, args.versions_per_model))
    for r in catalogue:
        r.card = ""  # neither loader below needs the card text; it is most of the memory
    _setup_mlflow(mlflow_db, catalogue, args.versions_per_model, seed)

    from zoo.models import CatalogModel, ModelVersion

    n_models, n_versions = CatalogModel.objects.count(), ModelVersion.objects.count()
    ids = dict(CatalogModel.objects.values_list("repo_id", "pk"))
    kinds, detail = _kinds(args.models, args.paths, catalogue, ids)
    detail_queries = _detail_queries(detail.portal)

    work = Path(tempfile.mkdtemp(prefix="registry-vs-mlflow-"))
    (work / "rotate.lua").write_text(WRK_SCRIPT)
    portal_port, mlflow_port = _free_port(), _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    gunicorn = [
        str(BIN / "gunicorn"),
        "--config=python:portal.gunicorn",  # as docker-compose.yml runs it
        "portal.wsgi:application",
        f"--workers={WORKERS}",
        f"--bind=127.0.0.1:{portal_port}",
        "--log-level=warning",
    ]
    if args.portal_threads != DEPLOYED["threads"]:
        gunicorn += (
            [f"--threads={args.portal_threads}"]
            if args.portal_threads > 1
            else ["--worker-class=sync"]
        )
    mlflow = [
        str(BIN / "mlflow"),
        "server",
        f"--backend-store-uri={_sqlalchemy_url(mlflow_db)}",
        f"--workers={WORKERS}",
        "--host=127.0.0.1",
        f"--port={mlflow_port}",
        "--uvicorn-opts=--no-access-log",
    ]
    mlflow_env = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cookie, token, cleanup = _credentials()
    try:
        with (
            _server(
                "portal", gunicorn, env, ROOT, work / "portal.log",
                f"http://127.0.0.1:{portal_port}/healthz",
            ) as _portal,
            _server(
                "MLflow", mlflow, mlflow_env, work, work / "mlflow.log",
                f"http://127.0.0.1:{mlflow_port}/health",
            ) as _mlflow,
        ):  # fmt: skip
            _verify_mlflow(mlflow_port, catalogue, args.versions_per_model)
            close = {"Connection": "close"} if args.connection_close else {}
            page_headers = {"Cookie": cookie, **close}
            api_headers = {"Authorization": f"Token {token}", **close}
            mlflow_headers = close
            rows: dict[str, tuple[float | None, float | None]] = {}
            for kind in kinds:
                headers = page_headers if kind.html else api_headers
                rows[kind.name] = (
                    _check(portal_port, kind.portal, headers, kind.html, f"portal {kind.name}"),
                    _check(mlflow_port, kind.mlflow, mlflow_headers, False, f"MLflow {kind.name}"),
                )
            _check(portal_port, detail.portal, page_headers, True, "portal model page")
            if not rows["one word, rare"][0]:
                sys.exit(
                    "The portal finds no model by its own rare word: its search data is missing "
                    f"(seeded by an older seed_portal?). Drop {portal_db} to reseed it."
                )

            portal_rt = _round_trips(portal_port, "/healthz")
            mlflow_rt = _round_trips(mlflow_port, "/health")
            settings = (
                f"{n_models:,} models, {n_versions:,} versions; {args.duration} s per run, "
                f"{args.paths} rotating paths per kind; {WORKERS} workers each: portal on "
                + (
                    f"gunicorn gthread x{args.portal_threads} threads"
                    if args.portal_threads > 1
                    else "gunicorn sync"
                )
                + f", MLflow {importlib.metadata.version('mlflow')} on uvicorn; wrk on loopback, "
                + ("a new connection per request" if args.connection_close else "keep-alive")
                + f"; {os.cpu_count()} CPUs\n"
                f"health check round trip, kept-alive / new connection: portal "
                f"{portal_rt[0]:.1f} / {portal_rt[1]:.1f} ms, MLflow {mlflow_rt[0]:.1f} / "
                f"{mlflow_rt[1]:.1f} ms"
            )
            if not args.connection_close and mlflow_rt[0] > mlflow_rt[1] + 20:
                settings += (
                    "\n  MLflow waits for a delayed ACK on every kept-alive request (its uvicorn "
                    "workers leave TCP_NODELAY off);\n  that inflates its latency at few "
                    "clients: --connection-close compares without keep-alive"
                )
            print(settings, flush=True)
            results: dict[tuple[str, int], tuple[Load, Load]] = {}
            for k, kind in enumerate(kinds):
                headers = page_headers if kind.html else api_headers
                for c in clients:
                    targets = {
                        "portal": (portal_port, kind.portal, headers),
                        "mlflow": (mlflow_port, kind.mlflow, mlflow_headers),
                    }
                    # Alternate which goes first, so drifting load elsewhere hits both alike.
                    order = ["portal", "mlflow"] if k % 2 == 0 else ["mlflow", "portal"]
                    done = {n: _wrk(*targets[n], c, args.duration, work) for n in order}
                    p, m = done["portal"], done["mlflow"]
                    results[kind.name, c] = (p, m)
                    print(
                        f"  {kind.name}, {c} clients: portal {p.rps:.1f}/s, MLflow {m.rps:.1f}/s",
                        flush=True,
                    )
            page = _wrk(
                portal_port, detail.portal, page_headers, args.detail_clients, args.duration, work
            )
    finally:
        cleanup()
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(settings)
    for line in _table(results, rows, kinds, clients):
        print(line)
    print()
    print(
        f"model detail page (portal only), {args.detail_clients} clients: {page.rps:.1f}/s, "
        f"p50 {page.p50:.1f} ms, p95 {page.p95:.1f} ms, p99 {page.p99:.1f} ms; SQL queries per "
        f"page: max {max(detail_queries)}, median {statistics.median(detail_queries):g} "
        f"over {len(detail_queries)} pages"
    )


if __name__ == "__main__":
    main()

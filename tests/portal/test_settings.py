"""Settings as a deployment sees them: strict, and clean under ``check --deploy``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "k" * 20 + "-production-like-secret-with-enough-entropy-9f8e7d6c5b4a",
    "ALLOWED_HOSTS": "zoo.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portal",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/15",
    "EMAIL_URL": "smtp://mailer@smtp.example.com:587?tls=true",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # The e2e fixtures allow async-unsafe ORM calls in this process only.
    skip = {*PRODUCTION_ENV, "DJANGO_ALLOW_ASYNC_UNSAFE"}
    base = {k: v for k, v in os.environ.items() if k not in skip}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_under_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {**PRODUCTION_ENV, "SECRET_KEY": ""}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_a_misspelt_boolean_stops_start_up_naming_the_variable():
    result = _manage("check", env={**PRODUCTION_ENV, "DEBUG": "flase"})
    assert result.returncode != 0
    assert "DEBUG='flase' is not a boolean" in result.stderr


def test_collectstatic_builds_the_production_manifest(tmp_path):
    env = {**PRODUCTION_ENV, "STATIC_ROOT": str(tmp_path / "static")}
    result = _manage("collectstatic", "--noinput", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()


def test_single_sign_on_half_configured_stops_start_up_naming_what_is_missing():
    env = {**PRODUCTION_ENV, "OIDC_ISSUER": "https://login.example.com", "OIDC_RP_CLIENT_ID": "zoo"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert (
        "OIDC_ISSUER is set, so OIDC_OP_AUTHORIZATION_ENDPOINT, OIDC_OP_TOKEN_ENDPOINT, "
        "OIDC_OP_JWKS_ENDPOINT, OIDC_RP_CLIENT_SECRET must be too." in result.stderr
    )


def test_passwords_cannot_be_switched_off_without_single_sign_on():
    result = _manage("check", env={**PRODUCTION_ENV, "LOCAL_SIGNIN_ENABLED": "false"})
    assert result.returncode != 0
    assert "LOCAL_SIGNIN_ENABLED=false needs single sign-on (OIDC_ISSUER)" in result.stderr


def test_an_unknown_role_in_the_role_map_stops_start_up():
    result = _manage("check", env={**PRODUCTION_ENV, "OIDC_ROLE_MAP": "zoo-admins=superuser"})
    assert result.returncode != 0
    assert "OIDC_ROLE_MAP: 'superuser' is not a portal role" in result.stderr

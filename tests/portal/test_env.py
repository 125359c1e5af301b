from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.env import (
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_database_url,
    parse_email_url,
    parse_role_map,
    redact_url,
)


def test_bool_accepts_common_spellings_and_refuses_others(monkeypatch):
    for value, expected in [("1", True), ("Yes", True), ("off", False), ("", False)]:
        monkeypatch.setenv("FLAG", value)
        assert env_bool("FLAG") is expected
    monkeypatch.setenv("FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="FLAG='ture' is not a boolean"):
        env_bool("FLAG")


def test_required_variable_names_itself(monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(ImproperlyConfigured, match="NOPE is required"):
        env_str("NOPE")
    assert env_str("NOPE", "fallback") == "fallback"


def test_int_and_list(monkeypatch):
    monkeypatch.setenv("N", "12")
    monkeypatch.setenv("HOSTS", " a.example , b.example,, ")
    assert env_int("N", minimum=1) == 12
    assert env_list("HOSTS") == ["a.example", "b.example"]
    monkeypatch.setenv("N", "twelve")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        env_int("N")
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum"):
        env_int("N", minimum=1)


def test_postgres_url_is_parsed_with_escaped_password():
    db = parse_database_url(
        "postgres://zoo:p%40ss@db.internal:6432/portal?sslmode=require", base_dir=Path("/srv")
    )
    assert db["ENGINE"] == "django.db.backends.postgresql"
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "zoo",
        "p@ss",
        "db.internal",
        "6432",
        "portal",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_sqlite_paths_relative_and_absolute():
    assert (
        parse_database_url("sqlite:///var/x.db", base_dir=Path("/srv"))["NAME"] == "/srv/var/x.db"
    )
    assert parse_database_url("sqlite:////tmp/x.db", base_dir=Path("/srv"))["NAME"] == "/tmp/x.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "not supported"),
        ("postgres://u:secret@host/", "names no database"),
        ("sqlite://", "needs a file path"),
    ],
)
def test_bad_database_urls_are_refused_without_leaking_passwords(url, message):
    with pytest.raises(ImproperlyConfigured, match=message) as info:
        parse_database_url(url, base_dir=Path("/srv"))
    assert "secret" not in str(info.value)


def test_email_urls():
    smtp = parse_email_url("smtp://mailer:pw@smtp.example.com:587?tls=true")
    assert smtp["EMAIL_HOST"] == "smtp.example.com"
    assert smtp["EMAIL_PORT"] == 587
    assert smtp["EMAIL_USE_TLS"] is True
    assert parse_email_url("smtps://smtp.example.com")["EMAIL_PORT"] == 465
    assert parse_email_url("console://")["EMAIL_BACKEND"].endswith("console.EmailBackend")
    with pytest.raises(ImproperlyConfigured, match="not supported"):
        parse_email_url("pigeon://coop")


def test_redact_hides_the_password_only():
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"


ROLES = ("ml-engineers", "stewards", "legal", "staff")


def test_role_map_reads_directory_groups_to_roles():
    value = " zoo-ml=ml-engineers, data-eng=ml-engineers ,,Zoo Admins=staff "

    assert parse_role_map(value, name="OIDC_ROLE_MAP", roles=ROLES) == {
        "zoo-ml": "ml-engineers",
        "data-eng": "ml-engineers",
        "Zoo Admins": "staff",
    }
    assert parse_role_map("", name="OIDC_ROLE_MAP", roles=ROLES) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("zoo-ml", "'zoo-ml' is not directory-group=role"),
        ("=legal", "is not directory-group=role"),
        ("zoo-ml=admin", "'admin' is not a portal role (one of ml-engineers, stewards"),
        ("g=legal,g=stewards", "directory group 'g' is mapped twice"),
    ],
)
def test_a_bad_role_map_stops_start_up_saying_why(value, message):
    with pytest.raises(ImproperlyConfigured, match=re.escape(message)):
        parse_role_map(value, name="OIDC_ROLE_MAP", roles=ROLES)

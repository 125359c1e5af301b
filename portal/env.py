"""Strict readers for settings that come from the environment.

A typo in a deployment variable should stop the process at start-up with a
message naming the variable, not surface later as a confusing failure, so
every reader here refuses values it does not understand.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_UNSET = object()


def _raw(name: str, default: object) -> str | object:
    value = os.environ.get(name)
    if value is None:
        if default is _UNSET:
            raise ImproperlyConfigured(f"Environment variable {name} is required.")
        return default
    return value.strip()


def env_str(name: str, default: str | object = _UNSET) -> str:
    return _raw(name, default)  # type: ignore[return-value]


def env_bool(name: str, default: bool | object = _UNSET) -> bool:
    value = _raw(name, default)
    if isinstance(value, bool):
        return value
    lowered = str(value).lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false, 1/0, yes/no).")


def env_int(name: str, default: int | object = _UNSET, *, minimum: int | None = None) -> int:
    value = _raw(name, default)
    if isinstance(value, int):
        number = value
    else:
        try:
            number = int(str(value))
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    return number


def env_list(name: str, default: list[str] | object = _UNSET) -> list[str]:
    value = _raw(name, default)
    if isinstance(value, list):
        return value
    return [item.strip() for item in str(value).split(",") if item.strip()]


def parse_database_url(url: str, *, base_dir: Path) -> dict:
    """Turn ``postgres://user:pass@host:port/name`` or ``sqlite:///path`` into DATABASES['default'].

    Relative SQLite paths are taken from ``base_dir`` so the embedded default
    works from any working directory.
    """
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query))
    if parts.scheme == "sqlite":
        raw_path = unquote(parts.path)
        if parts.netloc:
            raise ImproperlyConfigured(
                f"DATABASE_URL {url!r}: use sqlite:///relative/path or sqlite:////absolute/path."
            )
        path = raw_path[1:] if raw_path.startswith("/") else raw_path
        if not path:
            raise ImproperlyConfigured("DATABASE_URL for SQLite needs a file path.")
        db_path = Path(path) if Path(path).is_absolute() else base_dir / path
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(db_path),
            # The web server and the worker share the file: wait for locks instead
            # of failing, and let readers proceed while one process writes.
            "OPTIONS": {
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ImproperlyConfigured(f"DATABASE_URL {redact_url(url)!r} names no database.")
        conn_max_age = options.pop("conn_max_age", "60")
        try:
            max_age = int(conn_max_age)
        except ValueError:
            raise ImproperlyConfigured("DATABASE_URL conn_max_age must be an integer.") from None
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": max_age,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parts.scheme!r} is not supported (use postgres:// or sqlite:///)."
    )


def parse_email_url(url: str) -> dict:
    """Map EMAIL_URL onto Django's email settings.

    ``smtp://user:pass@host:587?tls=true``, ``smtps://…`` (implicit TLS),
    ``console://``, ``locmem://``, ``dummy://`` or ``file:///path``.
    """
    parts = urlsplit(url)
    options = {k.lower(): v for k, v in parse_qsl(parts.query)}
    backends = {
        "console": "django.core.mail.backends.console.EmailBackend",
        "locmem": "django.core.mail.backends.locmem.EmailBackend",
        "dummy": "django.core.mail.backends.dummy.EmailBackend",
        "file": "django.core.mail.backends.filebased.EmailBackend",
    }
    if parts.scheme in backends:
        settings = {"EMAIL_BACKEND": backends[parts.scheme]}
        if parts.scheme == "file":
            if not parts.path:
                raise ImproperlyConfigured("EMAIL_URL file:// needs a folder path.")
            settings["EMAIL_FILE_PATH"] = unquote(parts.path)
        return settings
    if parts.scheme in {"smtp", "smtps"}:
        if not parts.hostname:
            raise ImproperlyConfigured(f"EMAIL_URL {redact_url(url)!r} names no host.")
        tls = options.get("tls", "false").lower() in _TRUE
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": parts.hostname,
            "EMAIL_PORT": parts.port or (465 if parts.scheme == "smtps" else 25),
            "EMAIL_HOST_USER": unquote(parts.username or ""),
            "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
            "EMAIL_USE_SSL": parts.scheme == "smtps",
            "EMAIL_USE_TLS": tls and parts.scheme == "smtp",
        }
    raise ImproperlyConfigured(
        f"EMAIL_URL scheme {parts.scheme!r} is not supported "
        "(smtp, smtps, console, locmem, dummy or file)."
    )


def parse_storage_url(url: str) -> dict:
    """``s3://bucket/prefix?endpoint_url=…&region=…`` as the OPTIONS of django-storages' S3Storage.

    Credentials are not part of the URL: boto3 reads the standard
    AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or an instance role), so they
    never show up in a settings dump or an error message.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ImproperlyConfigured(
            f"STORAGE_URL scheme {parts.scheme!r} is not supported (use s3://bucket/prefix)."
        )
    if parts.username or parts.password:
        raise ImproperlyConfigured(
            "STORAGE_URL must not hold credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY instead."
        )
    if not parts.hostname:
        raise ImproperlyConfigured(f"STORAGE_URL {url!r} names no bucket.")
    known = {"endpoint_url", "region", "addressing_style"}
    query = dict(parse_qsl(parts.query))
    unknown = sorted(set(query) - known)
    if unknown:
        raise ImproperlyConfigured(
            f"STORAGE_URL: unknown option {', '.join(unknown)} (use {', '.join(sorted(known))})."
        )
    endpoint = query.get("endpoint_url")
    if endpoint and urlsplit(endpoint).scheme not in {"http", "https"}:
        raise ImproperlyConfigured(f"STORAGE_URL endpoint_url {endpoint!r} is not an http(s) URL.")
    options = {
        "bucket_name": parts.hostname,
        "location": unquote(parts.path).strip("/"),
        "endpoint_url": endpoint or None,
        "region_name": query.get("region") or None,
        # Blobs are named by their content and checkpoints per attempt: a name is never
        # reused for other bytes, and the portal, not the storage, decides what overwrites.
        "file_overwrite": True,
        "default_acl": None,
        "querystring_auth": True,
        # Presigned URLs in the form every current S3-compatible server accepts.
        "signature_version": "s3v4",
    }
    if query.get("addressing_style"):
        if query["addressing_style"] not in {"path", "virtual", "auto"}:
            raise ImproperlyConfigured("STORAGE_URL addressing_style is path, virtual or auto.")
        options["addressing_style"] = query["addressing_style"]
    return options


def redact_url(url: str) -> str:
    """Hide a password before a URL goes into an error message or a health answer."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def parse_role_map(value: str, *, name: str, roles: tuple[str, ...]) -> dict[str, str]:
    """``"directory-group=role,…"`` as {directory group: role}; every role must be one of ``roles``.

    One directory group gives one role; several groups may give the same one.
    """
    mapping: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        group, sep, role = (side.strip() for side in item.partition("="))
        if not sep or not group or not role:
            raise ImproperlyConfigured(f"{name}: {item!r} is not directory-group=role.")
        if role not in roles:
            raise ImproperlyConfigured(
                f"{name}: {role!r} is not a portal role (one of {', '.join(roles)})."
            )
        if mapping.get(group, role) != role:
            raise ImproperlyConfigured(f"{name}: directory group {group!r} is mapped twice.")
        mapping[group] = role
    return mapping

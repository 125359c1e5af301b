"""Settings for the Model Zoo Portal, read from the environment.

With nothing set the portal runs embedded: SQLite and a Celery broker kept in
files under ``var/``, so ``make run`` needs no servers. Production sets
DATABASE_URL (PostgreSQL) and CELERY_BROKER_URL (Redis); see README.md.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from governance.roles import SSO_ROLES
from portal.env import (
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_database_url,
    parse_email_url,
    parse_role_map,
    parse_storage_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)

# A development key is only acceptable with DEBUG on; production must bring its own.
_DEV_SECRET = "dev-only-insecure-key-never-use-in-production-0123456789abcdef"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off.")
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("SECRET_KEY is the development key; set a real one.")
# The audit chain's HMAC key: the database never sees it, so whoever holds only the
# database cannot recompute a link. Without AUDIT_KEY it is derived from SECRET_KEY
# (then rotating SECRET_KEY would orphan the chain: set AUDIT_KEY in production).
AUDIT_KEY = (
    env_str("AUDIT_KEY", "")
    or hmac.new(SECRET_KEY.encode(), b"model-zoo audit chain", hashlib.sha256).hexdigest()
)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "portal",
    "zoo",
    "governance",
    "jobs",
]

MIDDLEWARE = [
    "portal.metrics.RequestTimer",
    "portal.health.HealthzMiddleware",
    "portal.middleware.RequestIdMiddleware",
    "portal.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "governance.middleware.SsoSessionRefresh",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "portal.http.PortalErrorMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.navigation",
            ],
        },
    }
]

DATABASES = {
    "default": parse_database_url(
        env_str("DATABASE_URL", "sqlite:///var/portal.sqlite3"), base_dir=BASE_DIR
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A fresh checkout has no var/ yet; SQLite creates the file but not its folder.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
# The role the web server and workers connect as (not the owner, never a superuser);
# `manage.py migrate`, run as the owner, grants it its privileges. See deploy/postgres-roles.sql.
DATABASE_APP_ROLE = env_str("DATABASE_APP_ROLE", "")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # Passwords, refused to all but superusers when LOCAL_SIGNIN_ENABLED is off.
    "governance.backends.PasswordBackend",
    # Single sign-on; answers only the OIDC callback, and only when OIDC_ENABLED.
    "governance.backends.SsoBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
ANONYMOUS_USER_NAME = None  # guardian: anonymous users never hold object permissions

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Signed checkpoints of the audit chain's head, appended to this file (keep it off the
# database host, ideally on append-only storage); written every AUDIT_ANCHOR_EVERY_S.
AUDIT_ANCHOR_FILE = Path(env_str("AUDIT_ANCHOR_FILE", str(VAR_DIR / "audit" / "anchors.jsonl")))
# Object storage: with STORAGE_URL=s3://bucket/prefix?endpoint_url=…&region=… every
# artifact, dataset, feature set and checkpoint goes to that bucket (credentials from
# AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); unset, MEDIA_ROOT holds them.
STORAGE_URL = env_str("STORAGE_URL", "")
# Files at least this large go up in parts of STORAGE_MULTIPART_CHUNK bytes (S3's minimum
# part is 5 MiB), so a large upload neither sits whole in memory nor restarts from zero.
STORAGE_MULTIPART_THRESHOLD = env_int("STORAGE_MULTIPART_THRESHOLD", 64 * 2**20, minimum=5 * 2**20)
STORAGE_MULTIPART_CHUNK = env_int("STORAGE_MULTIPART_CHUNK", 16 * 2**20, minimum=5 * 2**20)
# /hf/ downloads: stream the bytes through the portal (the default, which every client
# version handles), or answer 302 to a presigned bucket URL valid this many seconds.
HUB_REDIRECT_DOWNLOADS = env_bool("HUB_REDIRECT_DOWNLOADS", False)
HUB_REDIRECT_EXPIRY_S = env_int("HUB_REDIRECT_EXPIRY_S", 300, minimum=10)
if HUB_REDIRECT_DOWNLOADS and not STORAGE_URL:
    raise ImproperlyConfigured("HUB_REDIRECT_DOWNLOADS needs object storage (set STORAGE_URL).")
STORAGES = {
    "default": (
        {
            "BACKEND": "zoo.bucket.BucketStorage",
            "OPTIONS": parse_storage_url(STORAGE_URL),
        }
        if STORAGE_URL
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    ),
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Uploads above this size go to a temporary file instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 4 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024

_email = parse_email_url(env_str("EMAIL_URL", "console://"))
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH")
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Model Zoo Portal <zoo@localhost>")
# The portal's address as people reach it, for links in e-mails and webhooks.
PORTAL_URL = env_str("PORTAL_URL", "http://localhost:8000").rstrip("/")

# --- security: strict by default, relaxed only for local development ---------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the cookie-backed form field
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Only the portal's own files: no inline script or style, no other origin, no frames.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # An internal portal's host does not belong on browsers' public preload list;
        # opting in is a deliberate choice (SECURE_HSTS_PRELOAD=true), not a default.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# --- Sign-in and tokens -------------------------------------------------------
# Failed sign-ins (page and POST /api/auth/token/) are counted in the cache per
# account and per client address; past a limit every attempt waits out the window.
SIGNIN_MAX_FAILURES = env_int("SIGNIN_MAX_FAILURES", 5, minimum=1)
SIGNIN_MAX_FAILURES_PER_CLIENT = env_int("SIGNIN_MAX_FAILURES_PER_CLIENT", 50, minimum=1)
SIGNIN_WINDOW_S = env_int("SIGNIN_WINDOW_S", 15 * 60, minimum=1)
# How many reverse proxies of ours append to X-Forwarded-For; 0 trusts REMOTE_ADDR only.
TRUSTED_PROXIES = env_int("TRUSTED_PROXIES", 0, minimum=0)
API_TOKEN_DAYS = env_int("API_TOKEN_DAYS", 30, minimum=1)
if API_TOKEN_DAYS > 365:
    raise ImproperlyConfigured("API_TOKEN_DAYS is at most 365, like every portal token.")

# --- Single sign-on (OpenID Connect, mozilla-django-oidc) ---------------------
# On when OIDC_ISSUER is set. The endpoints are the provider's discovery document's
# (<issuer>/.well-known/openid-configuration): authorization, token and JWKS. ID tokens
# must be RS256, signed by a key from the JWKS, issued by OIDC_ISSUER for
# OIDC_RP_CLIENT_ID, unexpired, with the nonce this browser was given.
# Compared with the token's "iss" exactly, trailing slash and all (some providers have one).
OIDC_ISSUER = env_str("OIDC_ISSUER", "")
OIDC_ENABLED = bool(OIDC_ISSUER)
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT", "")
# The library reads it at start-up; the portal takes every claim from the signed ID token.
OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT", "")
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = env_str("OIDC_RP_CLIENT_SECRET", "")
if OIDC_ENABLED:
    _missing = [
        name
        for name in (
            "OIDC_OP_AUTHORIZATION_ENDPOINT",
            "OIDC_OP_TOKEN_ENDPOINT",
            "OIDC_OP_JWKS_ENDPOINT",
            "OIDC_RP_CLIENT_ID",
            "OIDC_RP_CLIENT_SECRET",
        )
        if not globals()[name]
    ]
    if _missing:
        raise ImproperlyConfigured(f"OIDC_ISSUER is set, so {', '.join(_missing)} must be too.")
OIDC_RP_SIGN_ALGO = "RS256"
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT_S", 10, minimum=1)
# Seconds of clock difference allowed between the provider and the portal.
OIDC_LEEWAY_S = env_int("OIDC_LEEWAY_S", 60, minimum=0)
# A single sign-on session goes back to the provider (silently) this often, so a role
# taken away in the directory is gone within minutes (governance.middleware).
OIDC_RENEW_ID_TOKEN_EXPIRY_SECONDS = env_int("OIDC_RENEW_S", 15 * 60, minimum=60)
# The button's label: "Sign in with <OIDC_PROVIDER_NAME>".
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "company sign-in")
# The claim holding the directory groups, and which group gives which portal role:
# "directory-group=role,…"; roles are ml-engineers, stewards, legal, security,
# compliance and staff (the admin flag). Unmapped groups give nothing.
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")
OIDC_ROLE_MAP = parse_role_map(env_str("OIDC_ROLE_MAP", ""), name="OIDC_ROLE_MAP", roles=SSO_ROLES)
# Off: passwords are refused everywhere (page, POST /api/auth/token/, admin) except to
# superusers, the break-glass accounts for when the provider is down.
LOCAL_SIGNIN_ENABLED = env_bool("LOCAL_SIGNIN_ENABLED", True)
if not LOCAL_SIGNIN_ENABLED and not OIDC_ENABLED:
    raise ImproperlyConfigured("LOCAL_SIGNIN_ENABLED=false needs single sign-on (OIDC_ISSUER).")

# The cache holds the sign-in counters, so every web process must share it: Redis
# (CACHE_URL=redis://…) in production; embedded, a folder under var/ serves one host.
CACHE_URL = env_str("CACHE_URL", "")
if CACHE_URL:
    if urlsplit(CACHE_URL).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured("CACHE_URL must be a redis://, rediss:// or unix:// URL.")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "zoo",
        }
    }
    # Sessions read from Redis and written through to the database: one query less on
    # every signed-in page. Nothing deletes session rows behind Django's back.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

# --- REST API ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "governance.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "portal.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "portal.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.http.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Model Zoo Portal API",
    "DESCRIPTION": (
        "Catalogue, governance and jobs of the internal model zoo. Authenticate with "
        "`Authorization: Token zoo_api_…`: an API token from POST /api/auth/token/ (sign-in "
        "throttled; DELETE revokes the token sent) or from /account/tokens/, lasting "
        "API_TOKEN_DAYS; or with a browser session."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI is served from our own static files: the portal may run offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.Job.Status",
        "ModelStatusEnum": "zoo.models.CatalogModel.Status",
        "VersionStatusEnum": "zoo.models.ModelVersion.Status",
        "SensitivityEnum": "governance.models.Sensitivity",
        "ModelModalityEnum": "zoo.models.CatalogModel.Modality",
        "DatasetModalityEnum": "zoo.models.Dataset.Modality",
        "ProbeResultStatusEnum": "jobs.models.ProbeResult.Status",
        "IncidentCategoryEnum": "governance.models.IncidentCategory",
        "ReleaseCheckKindEnum": "zoo.models.ReleaseCheck.Kind",
        "ReleaseCheckStatusEnum": "zoo.models.ReleaseCheck.Status",
    },
}

# --- Celery -------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
BROKER_IS_FILESYSTEM = urlsplit(CELERY_BROKER_URL).scheme == "filesystem"
# The longest job a worker may run; the broker must not hand a message to a
# second worker while the first is still on it, so its visibility timeout is
# set above this.
JOB_TIME_LIMIT_S = env_int("JOB_TIME_LIMIT_S", 6 * 3600, minimum=60)
CELERY_BROKER_FOLDER = Path(env_str("CELERY_BROKER_FOLDER", str(VAR_DIR / "broker")))
# A running job holds a lease on its row, renewed by a heartbeat while it works; a job
# whose lease ran out is requeued (every REQUEUE_EVERY_S) as a new attempt.
JOB_LEASE_S = env_int("JOB_LEASE_S", 60, minimum=10)
JOB_HEARTBEAT_S = env_int("JOB_HEARTBEAT_S", max(2, JOB_LEASE_S // 4), minimum=1)
REQUEUE_EVERY_S = env_int("REQUEUE_EVERY_S", 20, minimum=1)
# Queued jobs whose message is no longer on the broker (flushed, restarted, never sent)
# are sent again once they have waited RECONCILE_GRACE_S; checked every RECONCILE_EVERY_S.
RECONCILE_EVERY_S = env_int("RECONCILE_EVERY_S", 30, minimum=1)
RECONCILE_GRACE_S = env_int("RECONCILE_GRACE_S", 30, minimum=1)
EXPIRE_EVERY_S = env_int("EXPIRE_EVERY_S", 15 * 60, minimum=1)
AUDIT_ANCHOR_EVERY_S = env_int("AUDIT_ANCHOR_EVERY_S", 5 * 60, minimum=1)
# Notifications: e-mails and webhook deliveries are Celery tasks retried with a doubling
# backoff from NOTIFY_BACKOFF_S, NOTIFY_MAX_ATTEMPTS times; beat re-sends any whose
# message was lost (pending longer than NOTIFY_RESEND_AFTER_S) every NOTIFY_EVERY_S.
NOTIFY_BACKOFF_S = env_int("NOTIFY_BACKOFF_S", 30, minimum=1)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 6, minimum=1)
NOTIFY_RESEND_AFTER_S = env_int("NOTIFY_RESEND_AFTER_S", 15 * 60, minimum=1)
NOTIFY_EVERY_S = env_int("NOTIFY_EVERY_S", 5 * 60, minimum=1)
WEBHOOK_TIMEOUT_S = env_int("WEBHOOK_TIMEOUT_S", 10, minimum=1)
# Reminders (approvals expiring, re-reviews due) are looked for every REMIND_EVERY_S.
REMIND_EVERY_S = env_int("REMIND_EVERY_S", 60 * 60, minimum=1)
# What dead processes leave (work folders, staging, unreferenced blobs, old checkpoints)
# is swept every SWEEP_EVERY_S once it is older than SWEEP_GRACE_S; unreferenced blobs
# also wait out an upload's 24 hours to be confirmed.
SWEEP_EVERY_S = env_int("SWEEP_EVERY_S", 3600, minimum=1)
SWEEP_GRACE_S = env_int("SWEEP_GRACE_S", JOB_TIME_LIMIT_S + 3600, minimum=0)
# Workers write a heartbeat row this often; a queue none has beaten for in
# WORKER_STALE_S is shown as unserved.
WORKER_HEARTBEAT_S = env_int("WORKER_HEARTBEAT_S", 15, minimum=1)
WORKER_STALE_S = env_int("WORKER_STALE_S", 60, minimum=2)
# Where workers do their work: one folder per attempt, so the sweep knows whose it is.
WORK_DIR = Path(env_str("WORK_DIR", str(VAR_DIR / "work")))
# /metrics (Prometheus) answers only with `Authorization: Bearer <METRICS_TOKEN>`; unset, 404.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

HF_ENDPOINT = env_str("HF_ENDPOINT", "https://huggingface.co")

# --- catalogue imports ---------------------------------------------------------
# Server folders a steward may import from; nothing outside them is readable.
IMPORT_ROOTS = [Path(p) for p in env_list("IMPORT_ROOTS", [str(VAR_DIR / "imports")])]
IMPORT_STAGING_DIR = Path(env_str("IMPORT_STAGING_DIR", str(VAR_DIR / "staging")))
IMPORT_MAX_FILES = env_int("IMPORT_MAX_FILES", 2000, minimum=1)
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 20 * 2**30, minimum=1)
IMPORT_MAX_RATIO = env_int("IMPORT_MAX_RATIO", 200, minimum=1)
# Uploaded archives larger than this are refused before they are stored.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 2 * 2**30, minimum=1)

# --- datasets and probes -------------------------------------------------------
DATASET_MAX_BYTES = env_int("DATASET_MAX_BYTES", 200 * 2**20, minimum=1)
DATASET_MAX_ROWS = env_int("DATASET_MAX_ROWS", 1_000_000, minimum=1)
# Workers unpack model versions here (one folder per revision) to load them.
MODEL_CACHE_DIR = Path(env_str("MODEL_CACHE_DIR", str(VAR_DIR / "model-cache")))
PROBE_MAX_EXAMPLES = env_int("PROBE_MAX_EXAMPLES", 20_000, minimum=10)
PROBE_MAX_CANDIDATES = env_int("PROBE_MAX_CANDIDATES", 10, minimum=1)
# The safetensors conversion runs in a child process with these limits.
CONVERT_TIMEOUT_S = env_int("CONVERT_TIMEOUT_S", 3600, minimum=10)
CONVERT_MAX_MEMORY_MB = env_int("CONVERT_MAX_MEMORY_MB", 16384, minimum=512)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The on-disk broker has no host; kombu says so at every connection.
        **({"kombu.connection": {"level": "ERROR"}} if BROKER_IS_FILESYSTEM else {}),
    },
}

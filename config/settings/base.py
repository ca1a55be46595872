"""Settings shared by every environment. Environment modules import this and override."""

from __future__ import annotations

from config.env import BASE_DIR, env

# https://docs.djangoproject.com/en/6.1/ref/settings/#debug
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Answer 403 to anything not on loopback (config.loopback): local settings turn it on while they
# run with DEBUG and the development secret key.
SERVE_LOOPBACK_ONLY = False

# Shown in snippets ("point base_url here"); derived from the request when unset.
PUBLIC_BASE_URL = env("LLMAPI_PUBLIC_BASE_URL", default="")
SITE_NAME = "LLM API"

INSTALLED_APPS = [
    "accounts.admin_config.SecureAdminConfig",  # django.contrib.admin, behind allauth
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "accounts",
    "billing",
    "routing",
    "observability",
    "outbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.dashboard",
            ],
        },
    },
]

# Runtime files of the embedded default (SQLite database, broker folders, uploads).
(BASE_DIR / "var").mkdir(exist_ok=True)

# Databases: SQLite on a fresh machine, PostgreSQL (psycopg 3, pooled) when DATABASE_URL says so.
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    from psycopg_pool import ConnectionPool

    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "pool",
        {
            "min_size": 1,
            "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
            # A dead database costs a bounded wait for a connection, then a 503.
            "timeout": env.float("DATABASE_POOL_TIMEOUT", default=5.0),
            # A connection PostgreSQL closed (a restart, pg_terminate_backend) is found and
            # replaced when it is taken from the pool, not handed to a request.
            "check": ConnectionPool.check_connection,
        },
    )
    DATABASES["default"]["OPTIONS"].setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=3)
    )
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    # WAL plus a busy timeout lets the web, worker and beat processes share the file.
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
# After the database could not be reached, the /v1 path answers 503 at once for this long
# (config.db.run_db) instead of each request waiting for the pool.
DATABASE_COOLDOWN_SECONDS = env.float("DATABASE_COOLDOWN_SECONDS", default=2.0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis backs the cache, the channel layer and Celery when REDIS_URL is set; otherwise
# everything stays in-process (the embedded default: nothing to install).
REDIS_URL = env("REDIS_URL", default="")
# What one Redis call on the request path may cost when Redis is down or hung (the cache, the
# rate limiter, the spend holds); after a failure each of them leaves Redis alone this long.
REDIS_CONNECT_TIMEOUT = env.float("LLMAPI_REDIS_CONNECT_TIMEOUT", default=1.0)
REDIS_SOCKET_TIMEOUT = env.float("LLMAPI_REDIS_SOCKET_TIMEOUT", default=1.0)
REDIS_COOLDOWN_SECONDS = env.float("LLMAPI_REDIS_COOLDOWN_SECONDS", default=2.0)
if REDIS_URL:
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as _RedisConnectionError
    from redis.retry import Retry

    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "llmapi",
            "OPTIONS": {
                "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                "socket_timeout": REDIS_SOCKET_TIMEOUT,
                # A pooled connection that Redis dropped is reopened once; nothing else is
                # retried (the caller falls back to the database).
                "retry": Retry(NoBackoff(), 1, supported_errors=(_RedisConnectionError,)),
            },
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Each consumer waits on a blocking BZPOPMIN of up to 5 s; redis-py 8 gives every
            # socket a 5 s read timeout by default, which would tear idle WebSockets down.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "prefix": "llmapi:asgi",
            },
        }
    }
    CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # Kombu's filesystem transport: a broker that needs no server, shared through var/.
    CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
    for folder in ("celery", "celery-processed", "celery-control"):
        (BASE_DIR / "var" / folder).mkdir(exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BASE_DIR / "var" / "celery"),
        "data_folder_out": str(BASE_DIR / "var" / "celery"),
        "processed_folder": str(BASE_DIR / "var" / "celery-processed"),
        "control_folder": str(BASE_DIR / "var" / "celery-control"),
        "store_processed": False,
    }

# https://docs.celeryq.dev/en/stable/userguide/configuration.html
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = 5 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE: dict = {}
# Tasks sent from requests and on_commit hooks go through outbox.services.task_dispatch: one
# try of at most OUTBOX_SEND_TIMEOUT_SECONDS, else kept in the database and sent every 10 s
# once the broker is back (for OUTBOX_GIVE_UP_SECONDS at most). After a failure a process
# keeps tasks without trying the broker for OUTBOX_BROKER_DOWN_SECONDS.
OUTBOX_SEND_TIMEOUT_SECONDS = env.float("LLMAPI_OUTBOX_SEND_TIMEOUT_SECONDS", default=1.0)
OUTBOX_BROKER_DOWN_SECONDS = env.float("LLMAPI_OUTBOX_BROKER_DOWN_SECONDS", default=5.0)
OUTBOX_GIVE_UP_SECONDS = env.float("LLMAPI_OUTBOX_GIVE_UP_SECONDS", default=24 * 3600.0)
CELERY_BEAT_SCHEDULE["outbox-send-pending-tasks"] = {
    "task": "outbox.tasks.send_pending_tasks",
    "schedule": 10.0,
}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "dashboard"

# django-allauth: https://docs.allauth.org/en/latest/account/configuration.html
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[LLM API] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = env("ACCOUNT_DEFAULT_HTTP_PROTOCOL", default="http")
# The defaults are on; stated here so nobody turns them off by accident. They need a shared
# cache to hold across processes, which REDIS_URL provides.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/5m/key",
    "signup": "20/m/ip",
    "confirm_email": "1/3m/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "change_password": "5/m/user",
    "manage_email": "10/m/user",
    # Ours, through allauth's limiter (accounts.views.organization_create).
    "create_organization": env("LLMAPI_ORG_CREATE_RATE", default="3/m/user,20/d/user"),
    # Invitations send mail to any address: per inviting person, and per organization (key).
    "invite_member": env("LLMAPI_INVITE_RATE", default="10/m/user,100/d/user,200/d/key"),
}
# Open invitations per organization; a withdrawn, answered or expired one frees its place.
ACCOUNTS_MAX_PENDING_INVITATIONS = env.int("LLMAPI_MAX_PENDING_INVITATIONS", default=50)
# Behind a load balancer every request comes from its address: allauth's per-IP limits (and
# ours, through its limiter) take the client's from X-Forwarded-For, counting this many proxies
# from the right. 0 ignores the header (anyone can write it). platform/README.md, "Behind a
# load balancer", says how to set it with uvicorn's FORWARDED_ALLOW_IPS.
ALLAUTH_TRUSTED_PROXY_COUNT = env.int("ALLAUTH_TRUSTED_PROXY_COUNT", default=0)
# A proxy that puts the client's address in a header of its own (CF-Connecting-IP, X-Real-IP).
ALLAUTH_TRUSTED_CLIENT_IP_HEADER = env("ALLAUTH_TRUSTED_CLIENT_IP_HEADER", default=None)
# How many organizations one person may own; the free starting credit comes once per person
# whatever the number, this bounds the rest (each organization is a tenant to keep).
ACCOUNTS_MAX_OWNED_ORGANIZATIONS = env.int("LLMAPI_MAX_OWNED_ORGANIZATIONS", default=5)
# https://docs.allauth.org/en/latest/mfa/configuration.html
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = SITE_NAME

DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="LLM API <noreply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_ROOT = BASE_DIR / "var" / "media"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Django's built-in Content-Security-Policy: same-origin assets only, scripts by nonce.
from django.utils.csp import CSP  # noqa: E402

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "font-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "accounts.api.errors.openai_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# https://drf-spectacular.readthedocs.io/en/latest/settings.html
SPECTACULAR_SETTINGS = {
    "TITLE": "LLM API",
    "DESCRIPTION": (
        "One OpenAI-compatible endpoint for every major LLM, routed across providers with "
        "automatic fallback. Authenticate with `Authorization: Bearer llmapi_...`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"RoutingStrategy": ["price", "latency", "throughput"]},
    "SECURITY": [{"bearerAuth": []}],
    "APPEND_COMPONENTS": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
}

# API keys: HMAC-SHA256 under this server-side pepper; rotating it invalidates every key.
API_KEY_PEPPER = env("LLMAPI_API_KEY_PEPPER", default="")
# How long a looked-up key stays in the shared cache, and in each process's memory.
API_KEY_CACHE_TTL = env.int("LLMAPI_API_KEY_CACHE_TTL", default=60)
API_KEY_LOCAL_TTL = env.float("LLMAPI_API_KEY_LOCAL_TTL", default=1.0)
# last_used_at is written in one batch per process at most this often.
API_KEY_LAST_USED_FLUSH_SECONDS = env.int("LLMAPI_API_KEY_LAST_USED_FLUSH_SECONDS", default=30)

INVITATION_MAX_AGE_DAYS = 7

# The gateway. Providers without credentials are played by the provider simulator.
SIMULATOR_HOST = env("LLMAPI_SIMULATOR_HOST", default="127.0.0.1")
SIMULATOR_PORT = env.int("LLMAPI_SIMULATOR_PORT", default=8100)
SIMULATOR_URL = env("LLMAPI_SIMULATOR_URL", default=f"http://{SIMULATOR_HOST}:{SIMULATOR_PORT}")
# The simulator's control API (faults, profiles, last requests) answers only this token; it is
# off without one. run_simulator and `manage.py simulator` read it from here.
SIMULATOR_CONTROL_TOKEN = env("LLMAPI_SIMULATOR_CONTROL_TOKEN", default="")
ROUTING_FORCE_SIMULATOR = env.bool("LLMAPI_FORCE_SIMULATOR", default=False)
# Whether a provider without credentials is played by the simulator (development, tests) or
# its endpoints are disabled (production: never silently simulated; a system check errors).
ROUTING_SIMULATE_MISSING_PROVIDERS = True
# A simulated generation costs $0: its answer is not a provider's, so it never spends credit.
# Tests (and a demo of the dashboard's figures) turn this on to drive the money path through
# the simulator at list prices; production never does.
ROUTING_BILL_SIMULATED = env.bool("LLMAPI_BILL_SIMULATED", default=False)
# How often a process checks whether the catalog changed (one cache read).
CATALOG_REFRESH_SECONDS = env.float("LLMAPI_CATALOG_REFRESH_SECONDS", default=5.0)
# Per attempt: connecting, and waiting for the first byte / between bytes of an answer.
ROUTING_CONNECT_TIMEOUT = env.float("LLMAPI_CONNECT_TIMEOUT", default=5.0)
ROUTING_ATTEMPT_TIMEOUT = env.float("LLMAPI_ATTEMPT_TIMEOUT", default=60.0)
ROUTING_MAX_ATTEMPTS = env.int("LLMAPI_MAX_ATTEMPTS", default=4)
ROUTING_BACKOFF_SECONDS = env.float("LLMAPI_BACKOFF_SECONDS", default=0.1)
# Image URLs bound for self-hosted endpoints are fetched by us (routing.imagefetch) and inlined.
# Loopback stays refused outside tests; size and time caps bound what one image can cost.
ROUTING_IMAGE_FETCH_ALLOW_LOOPBACK = False
ROUTING_IMAGE_FETCH_MAX_BYTES = env.int("LLMAPI_IMAGE_FETCH_MAX_BYTES", default=10 * 1024 * 1024)
ROUTING_IMAGE_FETCH_TIMEOUT = env.float("LLMAPI_IMAGE_FETCH_TIMEOUT", default=10.0)
# How long a stream whose client went away is still read, for the provider's usage.
ROUTING_DRAIN_SECONDS = env.float("LLMAPI_DRAIN_SECONDS", default=30.0)
# A stream records its cost so far on its spend hold this often (0: never): if its process
# dies, the hold's expiry bills that and logs the generation (billing.holds.hold_progress).
ROUTING_STREAM_PROGRESS_SECONDS = env.float("LLMAPI_STREAM_PROGRESS_SECONDS", default=1.0)
# A caller without max_tokens whose credit can't hold the model's maximum output gets a lower
# cap (x-llmapi-max-tokens-lowered), but never below this: a shorter answer is rarely useful.
ROUTING_MIN_OUTPUT_TOKENS = env.int("LLMAPI_MIN_OUTPUT_TOKENS", default=256)
# Circuit breaker over each process's rolling window of real traffic.
ROUTING_HEALTH_WINDOW_SECONDS = 60.0
ROUTING_BREAKER_CONSECUTIVE_FAILURES = 3
ROUTING_BREAKER_MIN_FAILURES = 5
ROUTING_BREAKER_ERROR_RATE = 0.5
ROUTING_BREAKER_COOLDOWN_SECONDS = env.float("LLMAPI_BREAKER_COOLDOWN_SECONDS", default=10.0)
ROUTING_BREAKER_MAX_COOLDOWN = 300.0
ROUTING_RATE_LIMIT_COOLDOWN = 5.0
# A slow or silent provider costs a bounded wait, not the whole attempt timeout. A stream's
# first token must come within max(floor, multiplier x the endpoint's p95 time to first token)
# (the default while it is unmeasured; a longer floor when the model may think first), and
# then no gap between reads may pass the idle limit. A non-streamed answer gets that limit
# plus its output cap at the endpoint's measured output speed. All within the attempt timeout.
ROUTING_FIRST_TOKEN_MULTIPLIER = env.float("LLMAPI_FIRST_TOKEN_MULTIPLIER", default=4.0)
ROUTING_FIRST_TOKEN_FLOOR_SECONDS = env.float("LLMAPI_FIRST_TOKEN_FLOOR_SECONDS", default=5.0)
ROUTING_REASONING_FIRST_TOKEN_FLOOR_SECONDS = env.float(
    "LLMAPI_REASONING_FIRST_TOKEN_FLOOR_SECONDS", default=20.0
)
ROUTING_FIRST_TOKEN_DEFAULT_SECONDS = env.float("LLMAPI_FIRST_TOKEN_DEFAULT_SECONDS", default=15.0)
ROUTING_STREAM_IDLE_SECONDS = env.float("LLMAPI_STREAM_IDLE_SECONDS", default=10.0)
ROUTING_REASONING_STREAM_IDLE_SECONDS = env.float(
    "LLMAPI_REASONING_STREAM_IDLE_SECONDS", default=30.0
)
ROUTING_DEFAULT_TOKENS_PER_SECOND = env.float("LLMAPI_DEFAULT_TOKENS_PER_SECOND", default=20.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "config.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "config.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": env("LLMAPI_LOG_FORMAT", default="plain"),
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own console handler would print every line a second time.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.db.backends": {"level": "WARNING"},
        # One INFO line per upstream request would cost the hot path more than it tells.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024  # image data URLs make big chat bodies
# Request bodies: refused with 413 as soon as they cross the limit (Content-Length up front, a
# chunked body as it arrives), before a view reads them. Longest matching path prefix wins.
REQUEST_BODY_MAX_BYTES = env.int("LLMAPI_REQUEST_BODY_MAX_BYTES", default=20 * 1024 * 1024)
# /v1/files: a 200 MiB batch file (BATCH_MAX_FILE_BYTES) and its multipart envelope.
REQUEST_BODY_LIMITS = {"/v1/files": 200 * 1024 * 1024 + 65536}

# Billing: spend holds (billing.holds), settlement and alerts. Money is integer nano-USD.
BILLING_REDIS_PREFIX = env("LLMAPI_BILLING_REDIS_PREFIX", default="bill")
# A hold not settled or released by then is released by the periodic job (its process died).
BILLING_HOLD_TTL_SECONDS = env.float("LLMAPI_BILLING_HOLD_TTL_SECONDS", default=900.0)
# An ended hold's record stays this long: settle and release are exactly-once within it.
BILLING_HOLD_RECORD_SECONDS = env.float("LLMAPI_BILLING_HOLD_RECORD_SECONDS", default=86400.0)
# The organization billing snapshot: per process (seconds), and in the shared cache.
BILLING_SNAPSHOT_LOCAL_TTL = env.float("LLMAPI_BILLING_SNAPSHOT_LOCAL_TTL", default=1.0)
BILLING_SNAPSHOT_CACHE_TTL = env.int("LLMAPI_BILLING_SNAPSHOT_CACHE_TTL", default=300)
# Settled usage reaches PostgreSQL in batches from a thread of the server process
# (billing.holds.outbox), this long after a request settles: one insert into the outbox table
# (with Redis; the flush below moves it into the ledger) or one ledger write (embedded default)
# for every request that settles meanwhile. 0 turns the thread off (tests flush themselves).
# With Redis the same records are also queued there, for a process that died before writing.
BILLING_USAGE_FLUSH_SECONDS = env.float("LLMAPI_BILLING_USAGE_FLUSH_SECONDS", default=0.02)
BILLING_USAGE_FLUSH_BATCH = env.int("LLMAPI_BILLING_USAGE_FLUSH_BATCH", default=500)
# A batch taken but not written after this long (its writer died) is queued again.
BILLING_USAGE_BATCH_STALE_SECONDS = env.float(
    "LLMAPI_BILLING_USAGE_BATCH_STALE_SECONDS", default=300.0
)
BILLING_ALERT_THRESHOLDS = (50, 80, 100)
# The flush (outbox table and Redis queue -> ledger) every 2 s.
CELERY_BEAT_SCHEDULE["billing-flush-usage"] = {
    "task": "billing.tasks.flush_usage",
    "schedule": 2.0,
}
# Reconciliation (billing.services.reconcile): served generations in the request logs that the
# ledger lacks are billed. Each run looks this far back, leaving out the last SETTLE seconds.
BILLING_RECONCILE_WINDOW_SECONDS = env.float("LLMAPI_BILLING_RECONCILE_WINDOW", default=3600.0)
BILLING_RECONCILE_SETTLE_SECONDS = env.float("LLMAPI_BILLING_RECONCILE_SETTLE", default=60.0)
CELERY_BEAT_SCHEDULE["billing-reconcile-usage"] = {
    "task": "billing.tasks.reconcile_usage",
    "schedule": 300.0,
}
# And the other way round, over the same window: billed generations without a request log.
CELERY_BEAT_SCHEDULE["observability-reconcile-request-logs"] = {
    "task": "observability.tasks.reconcile_request_logs",
    "schedule": 300.0,
}
# Production Redis must keep what it is told (README, "Redis in production"): checked at start.
BILLING_CHECK_REDIS_PERSISTENCE = env.bool("LLMAPI_CHECK_REDIS_PERSISTENCE", default=False)
CELERY_BEAT_SCHEDULE["billing-release-expired-holds"] = {
    "task": "billing.tasks.release_expired_holds",
    "schedule": 60.0,
}

# Observability: request logs, rollups and the live dashboard (observability.writer).
# The request path buffers finished generations in memory for at most this long before a
# background thread pushes them to the durable queue (a database table, never Redis alone).
OBSERVABILITY_BUFFER_FLUSH_SECONDS = env.float("LLMAPI_OBS_BUFFER_FLUSH_SECONDS", default=0.2)
# Records per batch written in one transaction, and batches per flush run.
OBSERVABILITY_FLUSH_BATCH = env.int("LLMAPI_OBS_FLUSH_BATCH", default=500)
OBSERVABILITY_FLUSH_MAX_BATCHES = env.int("LLMAPI_OBS_FLUSH_MAX_BATCHES", default=100)
# Without Redis the web process writes its own logs (the in-memory channel layer only reaches
# its own consumers); with Redis, Celery workers do and send through channels_redis.
OBSERVABILITY_WRITE_IN_PROCESS = env.bool("LLMAPI_OBS_WRITE_IN_PROCESS", default=not REDIS_URL)
# Embedded default: the periodic task writes only queue rows older than this (left behind).
OBSERVABILITY_QUEUE_STALE_SECONDS = env.float("LLMAPI_OBS_QUEUE_STALE_SECONDS", default=10.0)
OBSERVABILITY_LIVE_UPDATES = True
# A live socket asks this often whether its person is still a member (removal also closes it at
# once, through the channel layer; this catches what that message missed).
LIVE_MEMBERSHIP_RECHECK_SECONDS = env.float("LLMAPI_LIVE_MEMBERSHIP_RECHECK_SECONDS", default=30.0)
# Live pushes give up after this long (a channel layer that is down never holds up a flush,
# a batch runner or a request), then skip sends for OBSERVABILITY_LIVE_DOWN_SECONDS.
OBSERVABILITY_LIVE_SEND_TIMEOUT = env.float("LLMAPI_LIVE_SEND_TIMEOUT", default=2.0)
OBSERVABILITY_LIVE_DOWN_SECONDS = env.float("LLMAPI_LIVE_DOWN_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["observability-flush-request-logs"] = {
    "task": "observability.tasks.flush_request_logs",
    "schedule": 2.0,
}

# Batches (routing.batches): OpenAI-compatible files and batches, run by Celery workers.
BATCH_MAX_FILE_BYTES = env.int("LLMAPI_BATCH_MAX_FILE_BYTES", default=200 * 1024 * 1024)
BATCH_MAX_LINES = env.int("LLMAPI_BATCH_MAX_LINES", default=1_000_000)
BATCH_DISCOUNT_PERCENT = env.int("LLMAPI_BATCH_DISCOUNT_PERCENT", default=50)
# Calls in flight for one batch runner, and for every batch in one worker process.
BATCH_ORG_CONCURRENCY = env.int("LLMAPI_BATCH_ORG_CONCURRENCY", default=16)
BATCH_GLOBAL_CONCURRENCY = env.int("LLMAPI_BATCH_GLOBAL_CONCURRENCY", default=64)
BATCH_MAX_ATTEMPTS = env.int("LLMAPI_BATCH_MAX_ATTEMPTS", default=3)
# A running batch looks its key up again this often: revoked, expired or deleted stops it.
BATCH_KEY_RECHECK_SECONDS = env.float("LLMAPI_BATCH_KEY_RECHECK_SECONDS", default=2.0)
BATCH_RETRY_BASE_SECONDS = env.float("LLMAPI_BATCH_RETRY_BASE_SECONDS", default=2.0)
BATCH_LEASE_SECONDS = env.float("LLMAPI_BATCH_LEASE_SECONDS", default=120.0)
BATCH_CLAIM_SIZE = env.int("LLMAPI_BATCH_CLAIM_SIZE", default=64)
# A runner starts items for BATCH_RUN_SECONDS, lets the calls in flight finish for up to
# BATCH_DRAIN_SECONDS (calls still running then are billed their prompt and run again), then
# hands the batch to a new runner. The drain fits one attempt's timeout; run + drain stays
# under the lease, so no second runner takes items that are still upstream.
BATCH_RUN_SECONDS = env.float("LLMAPI_BATCH_RUN_SECONDS", default=45.0)
BATCH_DRAIN_SECONDS = env.float("LLMAPI_BATCH_DRAIN_SECONDS", default=ROUTING_ATTEMPT_TIMEOUT)
# Start a batch on a worker as soon as it is created (tests start it themselves).
BATCH_DISPATCH = env.bool("LLMAPI_BATCH_DISPATCH", default=True)
# Where files live: a STORAGES alias (set STORAGES["batches"] to an S3-compatible backend).
BATCH_STORAGE_ALIAS = env("LLMAPI_BATCH_STORAGE_ALIAS", default="default")
CELERY_TASK_ROUTES = {"routing.batches.tasks.batch_run": {"queue": "batches"}}
# Workers of several environments can share one broker, each on queues of its own.
CELERY_TASK_DEFAULT_QUEUE = env("LLMAPI_CELERY_DEFAULT_QUEUE", default="celery")
CELERY_BEAT_SCHEDULE["batches-sweep"] = {
    "task": "routing.batches.tasks.batch_sweep",
    "schedule": 15.0,
}
# /v1/responses kept with `store` (the default) are retrievable and continuable this long.
RESPONSES_RETENTION_DAYS = env.int("LLMAPI_RESPONSES_RETENTION_DAYS", default=30)
RESPONSES_PURGE_BATCH = env.int("LLMAPI_RESPONSES_PURGE_BATCH", default=1000)
RESPONSES_PURGE_MAX_BATCHES = env.int("LLMAPI_RESPONSES_PURGE_MAX_BATCHES", default=100)
CELERY_BEAT_SCHEDULE["routing-purge-stored-responses"] = {
    "task": "routing.tasks.purge_stored_responses",
    "schedule": 3600.0,
}

# Stripe (billing.stripe_client): off when no secret key is set; the billing pages say so.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
BILLING_TOPUP_MIN_CENTS = 500
BILLING_TOPUP_MAX_CENTS = 100_000
BILLING_TOPUP_PRESETS_CENTS = (1000, 2500, 5000, 10000)
# Postpaid usage goes to this Stripe meter (value: nano-USD), every minute, in batches.
STRIPE_METER_EVENT_NAME = env("STRIPE_METER_EVENT_NAME", default="llm_api_usage")
BILLING_METER_BATCH = 100
# An auto-recharge still pending this long after its call to Stripe lost its worker: another
# worker sends it again under the same idempotency key (the SDK gives up long before).
BILLING_RECHARGE_PENDING_SECONDS = env.float(
    "LLMAPI_BILLING_RECHARGE_PENDING_SECONDS", default=600.0
)
# After a recharge failed on a Stripe error, the next one waits this long (Stripe may be down).
BILLING_RECHARGE_RETRY_SECONDS = env.float("LLMAPI_BILLING_RECHARGE_RETRY_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE["billing-report-meter-usage"] = {
    "task": "billing.tasks.report_meter_usage",
    "schedule": 60.0,
}
CELERY_BEAT_SCHEDULE["billing-retry-auto-recharges"] = {
    "task": "billing.tasks.retry_auto_recharges",
    "schedule": 60.0,
}
# Request logs older than this are purged (rollups stay), in batches of LOG_PURGE_BATCH.
LOG_RETENTION_DAYS = env.int("LLMAPI_LOG_RETENTION_DAYS", default=30)
LOG_PURGE_BATCH = env.int("LLMAPI_LOG_PURGE_BATCH", default=1000)
LOG_PURGE_MAX_BATCHES = env.int("LLMAPI_LOG_PURGE_MAX_BATCHES", default=500)
CELERY_BEAT_SCHEDULE["observability-purge-request-logs"] = {
    "task": "observability.tasks.purge_request_logs",
    "schedule": 600.0,
}
# OpenTelemetry: a span per request and per upstream attempt, sent over OTLP/HTTP when an
# endpoint is set (the standard OTEL_EXPORTER_OTLP_* variables configure the exporter).
OTEL_EXPORTER_OTLP_ENDPOINT = env("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_SERVICE_NAME = env("OTEL_SERVICE_NAME", default="llmapi")
# /metrics (Prometheus) asks for this bearer token when set; production requires one.
METRICS_TOKEN = env("LLMAPI_METRICS_TOKEN", default="")
CELERY_BEAT_SCHEDULE["observability-share-endpoint-health"] = {
    "task": "observability.tasks.share_endpoint_health",
    "schedule": 30.0,
}

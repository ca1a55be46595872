"""Production: every secret from the environment with no default, HTTPS everywhere."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import REDIS_URL, env

DEBUG = False
SECRET_KEY = env("DJANGO_SECRET_KEY")
API_KEY_PEPPER = env("LLMAPI_API_KEY_PEPPER")
# /metrics is never open to the internet.
METRICS_TOKEN = env("LLMAPI_METRICS_TOKEN")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
# Rate-limit windows, spend holds, the key cache and the channel layer are shared through
# Redis; without it each process would keep its own, and every limit would multiply.
if not REDIS_URL:
    raise ImproperlyConfigured(
        "Set the REDIS_URL environment variable: production shares rate limits, spend holds "
        "and live updates between processes through Redis."
    )
# An endpoint whose provider has no credentials is disabled, never played by the simulator
# (the routing.E001 check refuses to start). LLMAPI_FORCE_SIMULATOR stays an explicit choice
# (benchmarks), and then nothing is billed.
ROUTING_SIMULATE_MISSING_PROVIDERS = False
ROUTING_BILL_SIMULATED = False

# https://docs.djangoproject.com/en/6.1/howto/deployment/checklist/
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=60 * 60 * 24 * 365)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https"
# The health probe and metrics come over plain HTTP from inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# https://docs.djangoproject.com/en/6.1/topics/email/#smtp-backend
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": env("EMAIL_HOST"),
            "port": env.int("EMAIL_PORT", default=587),
            "username": env("EMAIL_HOST_USER", default=""),
            "password": env("EMAIL_HOST_PASSWORD", default=""),
            "use_tls": env.bool("EMAIL_USE_TLS", default=True),
            "timeout": 10,
        },
    }
}

# Redis must keep holds, counters and queued tasks across a restart (billing.checks).
BILLING_CHECK_REDIS_PERSISTENCE = env.bool("LLMAPI_CHECK_REDIS_PERSISTENCE", default=True)

# One JSON object per line, with the request id, for the log pipeline.
LOGGING["handlers"]["console"]["formatter"] = env("LLMAPI_LOG_FORMAT", default="json")  # noqa: F405

"""Tests: the parts DATABASE_URL / REDIS_URL name, fast hashing, mail captured."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-test-only-key")

from .base import *  # noqa: E402,F403
from .base import env  # noqa: E402

DEBUG = False
API_KEY_PEPPER = "test-pepper"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
WHITENOISE_USE_FINDERS = True
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
if REDIS_URL:  # noqa: F405
    # Each xdist worker gets its own key space so parallel tests don't see each other's cache.
    worker = env("PYTEST_XDIST_WORKER", default="main")
    CACHES["default"]["KEY_PREFIX"] = f"llmapi-test-{worker}"  # noqa: F405
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"llmapi-test-{worker}"  # noqa: F405
API_KEY_LAST_USED_FLUSH_SECONDS = 10**9  # tests flush explicitly

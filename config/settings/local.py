"""Development on a fresh machine: SQLite, in-process cache and channels, mail on the console."""

from __future__ import annotations

import os

DEVELOPMENT_SECRET_KEY = "insecure-development-only-key-do-not-deploy"  # noqa: S105 (public)
os.environ.setdefault("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY)
# The loopback simulator's control token in development, as platform/Procfile.dev starts it,
# so `manage.py simulator set ...` works there out of the box.
os.environ.setdefault("LLMAPI_SIMULATOR_CONTROL_TOKEN", "insecure-local-simulator-token")

from .base import *  # noqa: E402,F403
from .base import env  # noqa: E402

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# DEBUG with a secret everyone knows serves this machine only (config.loopback).
SERVE_LOOPBACK_ONLY = DEBUG and SECRET_KEY == DEVELOPMENT_SECRET_KEY  # noqa: F405
# A development pepper; production refuses to start without its own.
API_KEY_PEPPER = API_KEY_PEPPER or "insecure-development-pepper"  # noqa: F405
# Sign-up and invitation mail is printed on the console.
MAILERS = {
    "default": {
        "BACKEND": env(
            "DJANGO_EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
        )
    }
}
# Plain storage: no collectstatic needed to serve in development.
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
SERVESTATIC_USE_FINDERS = True
SERVESTATIC_AUTOREFRESH = True

"""Production settings pass Django's deployment checklist, and refuse to start without secrets."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "EMAIL_HOST": "smtp.example.com",
}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LLMAPI_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_under_production_settings():
    env = {
        **PRODUCTION_ENV,
        # Generated per run: production secrets never have a default or a fixture value.
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "LLMAPI_API_KEY_PEPPER": secrets.token_urlsafe(32),
        "LLMAPI_METRICS_TOKEN": secrets.token_urlsafe(32),
    }
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_its_secrets():
    for missing in ("DJANGO_SECRET_KEY", "LLMAPI_API_KEY_PEPPER", "LLMAPI_METRICS_TOKEN"):
        env = {
            **PRODUCTION_ENV,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "LLMAPI_API_KEY_PEPPER": secrets.token_urlsafe(32),
            "LLMAPI_METRICS_TOKEN": secrets.token_urlsafe(32),
        }
        del env[missing]
        result = _manage("check", env=env)
        assert result.returncode != 0
        assert missing in result.stderr

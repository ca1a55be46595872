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


# Every provider the catalog enables, configured (never called: `check` makes no request).
PROVIDER_CREDENTIALS = {
    "GOOGLE_AI_STUDIO_API_KEY": "test-google",
    "VERTEX_AI_ACCESS_TOKEN": "test-vertex",
    "VERTEX_PROJECT": "test-project",
    "OPENROUTER_API_KEY": "test-openrouter",
    "PRIVATE_VLLM_BASE_URL": "https://vllm.example.com/v1",
    "PRIVATE_VLLM_API_KEY": "test-vllm",
    "OPENAI_API_KEY": "test-openai",
    "ANTHROPIC_API_KEY": "test-anthropic",
}


def _secrets() -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "LLMAPI_API_KEY_PEPPER": secrets.token_urlsafe(32),
        "LLMAPI_METRICS_TOKEN": secrets.token_urlsafe(32),
    }


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "LLMAPI_")) and k not in PROVIDER_CREDENTIALS
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_under_production_settings():
    # Secrets generated per run: production secrets never have a default or a fixture value.
    # The test machine's Redis keeps nothing on disk, which production's persistence check
    # rightly warns about (tests/billing/test_attacks_durability.py checks that warning).
    env = {
        **PRODUCTION_ENV,
        **_secrets(),
        **PROVIDER_CREDENTIALS,
        "LLMAPI_CHECK_REDIS_PERSISTENCE": "false",
    }
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_its_secrets():
    for missing in ("DJANGO_SECRET_KEY", "LLMAPI_API_KEY_PEPPER", "LLMAPI_METRICS_TOKEN"):
        env = {**PRODUCTION_ENV, **_secrets(), **PROVIDER_CREDENTIALS}
        del env[missing]
        result = _manage("check", env=env)
        assert result.returncode != 0
        assert missing in result.stderr


def test_production_refuses_to_start_with_a_provider_that_has_no_credentials():
    """Before: a provider without credentials was silently played by the simulator, in
    production too. Now each one is an error, naming its variable."""
    env = {**PRODUCTION_ENV, **_secrets(), **PROVIDER_CREDENTIALS}
    del env["ANTHROPIC_API_KEY"]
    del env["PRIVATE_VLLM_BASE_URL"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "routing.E001" in result.stderr
    assert "Provider 'anthropic'" in result.stderr and "ANTHROPIC_API_KEY" in result.stderr
    assert "Provider 'private-vllm'" in result.stderr
    assert "Provider 'openai'" not in result.stderr


def test_forcing_the_simulator_in_production_is_explicit_and_warned():
    """Benchmarks run production settings on the simulator on purpose: a warning, not an
    error, and nothing is billed (see test_attacks_pricing)."""
    env = {**PRODUCTION_ENV, **_secrets(), "LLMAPI_FORCE_SIMULATOR": "true"}
    result = _manage("check", env=env)
    assert result.returncode == 0, result.stderr
    assert "routing.W001" in result.stderr + result.stdout

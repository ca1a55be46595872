from __future__ import annotations

import os
import shutil
import tempfile

import pytest

# Playwright's sync API runs its own event loop; Django must allow ORM calls from this thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # The machine's network is closed; without these Chromium keeps dialing out at start.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        pytest.fail(
            "Debian's Chromium is required for the browser tests: `make browser` installs it "
            "(apt-get install chromium). Playwright must not download a browser of its own."
        )
    return path


@pytest.fixture
def browser():
    # Function-scoped on purpose: Playwright's sync API keeps an event loop running in this
    # thread while it is open, which would break the async tests that share the worker.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    with tempfile.TemporaryDirectory():
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.console_errors = errors
        yield page
        context.close()

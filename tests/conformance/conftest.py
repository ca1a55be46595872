"""Conformance: the real client libraries (Python and Node) against the gateway served over HTTP,
each scenario on one model of each provider wire (the simulator plays the providers).

Every test records (client, feature, wire, passed) for docs/compatibility.md. A Python test says
what it covers with `@pytest.mark.conformance(client, feature)` (or `feature=` alone, with a
`client` parameter) and a `wire` parameter; its outcome is the cell. A test that runs many
scenarios in one process (the Node clients) records each cell with the `record_cell` fixture.
Each pytest process (each xdist worker) writes its cells to var/conformance/;
scripts/compatibility_matrix.py merges one run's files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from django.conf import settings

# One model per provider wire, and the body field that forces the wire.
WIRES = {
    "gemini": ("google/gemini-3.1-flash-lite", "google-ai-studio"),
    "openai": ("openai/gpt-4.1-mini", "openai"),
    "anthropic": ("anthropic/claude-3.5-haiku", "anthropic"),
}
# A model that reasons, per wire (gpt-4.1-mini doesn't: the OpenAI-compatible wire has none here).
REASONING = {
    "gemini": ("google/gemini-3.1-pro", "google-ai-studio"),
    "anthropic": ("anthropic/claude-3.5-haiku", "anthropic"),
}
ALL_WIRES = pytest.mark.parametrize("wire", list(WIRES))
RESULTS_DIR = Path(settings.BASE_DIR) / "var" / "conformance"
NODE_DIR = Path(__file__).parent / "node"
_PROPERTY = "conformance_cell"


def only(provider: str) -> dict:
    """The request body field that pins a request to one provider."""
    return {"provider": {"only": [provider]}}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "conformance(client, feature): the matrix cell a test decides"
    )


@pytest.fixture
def record_cell(request):
    """record_cell(client, feature, wire, passed, detail=""): one cell of the matrix."""

    def record(client: str, feature: str, wire: str, passed: bool, detail: str = "") -> None:
        cell = {"client": client, "feature": feature, "wire": wire, "passed": bool(passed)}
        cell["order"] = [*_place(request.node), len(request.node.user_properties)]
        if detail:
            cell["detail"] = detail[:500]
        request.node.user_properties.append((_PROPERTY, cell))

    return record


_cells: list[dict] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    marker = item.get_closest_marker("conformance")
    if marker is None:
        return report
    params = item.callspec.params if hasattr(item, "callspec") else {}
    # A marked test's cell is its outcome: a failed setup or call fails it, a skip leaves it out.
    if report.when == "call" or (report.when == "setup" and report.failed):
        if not report.skipped:
            _cells.append(
                {
                    "client": marker.kwargs.get("client") or params.get("client") or marker.args[0],
                    "feature": marker.kwargs.get("feature") or marker.args[-1],
                    "wire": params.get("wire", "any"),
                    "passed": report.passed,
                    "order": [*_place(item), 0],
                    "detail": _failure(report),
                }
            )
    return report


def _place(item) -> list:
    # Where the test is defined: the matrix lists rows in this order, whichever worker ran them.
    path, line, _ = item.location
    return [path, line or 0]


def _failure(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message[:500] if report.failed and crash is not None else ""


def pytest_runtest_logreport(report):
    # On xdist's controller (its reports carry the worker's `node`) the workers record.
    if report.when == "call" and not hasattr(report, "node"):
        _cells.extend(value for name, value in report.user_properties if name == _PROPERTY)


def pytest_sessionfinish(session):
    if not _cells:
        return
    # One run's workers share PYTEST_XDIST_TESTRUNUID; a run without xdist gets an id of its own.
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"cells-{run}-{worker}.json"
    path.write_text(json.dumps({"run": run, "worker": worker, "cells": _cells}, indent=1))


def run_node(script: str, scenarios: list[dict], *, base_url: str, key: str) -> list[dict]:
    """Runs tests/conformance/node/<script> once for many scenarios (each {"scenario", "model",
    "provider"}); returns one result per scenario: {"scenario", "wire", "ok", ...}."""
    env = {
        **os.environ,
        "LLMAPI_BASE_URL": base_url,
        "LLMAPI_KEY": key,
        "CONFORMANCE_SCENARIOS": json.dumps(scenarios),
    }
    node = shutil.which("node")
    assert node, "the conformance suite needs Node.js (node) on the PATH"
    done = subprocess.run(
        [node, str(NODE_DIR / script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=settings.BASE_DIR,
        check=False,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and len(results) == len(scenarios), (
        f"node {script} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return results

"""The live overview in the production topology: a uvicorn web process serves the API and the
WebSocket, a separate Celery worker process writes the logs from the Redis stream and pushes
through channels_redis. A member watching the overview gets the new figures within 2 seconds
of the answer, and the request's log, attempts and rollup are in the database."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from django.conf import settings
from websockets.sync.client import connect

from accounts import services as account_services
from observability.models import RequestAttempt, RequestLog, UsageRollup
from routing.health import health_book
from routing.services import catalog_load
from routing.snapshot import catalog
from tests.billing.test_multiprocess_gateway import Servers, _delete_prefix
from tests.observability.helpers import session_cookie

HERO = "google/gemini-3.1-flash-lite"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def deployment(sim, alice, transactional_db):
    prefix = f"livetopo:{uuid.uuid4().hex[:10]}"
    catalog_load()
    catalog.invalidate()
    health_book.reset()
    queue = f"{prefix}:tasks"
    servers = Servers(
        count=1,
        simulator_url=sim.url,
        prefix=prefix,
        extra_env={"LLMAPI_CELERY_DEFAULT_QUEUE": queue, "LLMAPI_OBS_WRITE_IN_PROCESS": "false"},
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "--pool=solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
        cwd=settings.BASE_DIR,
        env=servers.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield servers, worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        worker.stderr.close()
        servers.stop()
        catalog.invalidate()
        _delete_prefix(prefix)


def _ask(base_url: str, secret: str) -> dict:
    response = httpx.post(
        f"{base_url}/chat/completions",
        json={"model": HERO, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def _next_update(socket, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(socket.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if message["type"] == "update":
            return message


def test_a_worker_process_pushes_the_overview_within_2_seconds(deployment, alice):
    servers, worker = deployment
    _, secret = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="live"
    )
    base_url = servers.url(0)
    origin = base_url.removesuffix("/v1")
    ws_url = origin.replace("http://", "ws://") + f"/ws/orgs/{alice.org.id}/live/"
    cookie = session_cookie(alice.user).decode()
    with connect(ws_url, additional_headers={"Cookie": cookie, "Origin": origin}) as socket:
        snapshot = json.loads(socket.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and snapshot["figures"]["requests"] == 0

        # The first call also waits for the worker to be up.
        first = _ask(base_url, secret)
        try:
            update = _next_update(socket, timeout=60)
        except TimeoutError:
            pytest.fail(f"no update; worker alive: {worker.poll() is None}")
        assert update["recent"][0]["id"] == first["id"]

        second = _ask(base_url, secret)
        answered = time.monotonic()
        update = _next_update(socket, timeout=2)
        assert time.monotonic() - answered < 2
        assert update["figures"]["requests"] == 2
        assert update["recent"][0]["id"] == second["id"]

    log = RequestLog.objects.get(generation_id=second["id"])
    assert log.organization_id == alice.org.id and log.status == "ok"
    assert RequestAttempt.objects.filter(log=log).count() == 1
    assert sum(r.requests for r in UsageRollup.objects.filter(organization=alice.org)) == 2

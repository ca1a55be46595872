"""The live overview in the production topology: a uvicorn web process serves the API and the
WebSocket, a separate Celery worker process writes the logs from the durable queue and pushes
through channels_redis. A member watching the overview stays connected while nothing happens,
gets the new figures within 2 seconds of the answer, and the request's log, attempts and rollup
are in the database."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import httpx
import pytest
from django.conf import settings
from websockets.exceptions import ConnectionClosed
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
def deployment(sim, alice, transactional_db, tmp_path):
    prefix = f"livetopo:{uuid.uuid4().hex[:10]}"
    web_log = (tmp_path / "web.log").open("wb")
    worker_log = (tmp_path / "worker.log").open("wb")
    catalog_load()
    catalog.invalidate()
    health_book.reset()
    queue = f"{prefix}:tasks"
    servers = Servers(
        count=1,
        simulator_url=sim.url,
        prefix=prefix,
        extra_env={"LLMAPI_CELERY_DEFAULT_QUEUE": queue, "LLMAPI_OBS_WRITE_IN_PROCESS": "false"},
        stderr=web_log,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queue, "--pool=solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
        cwd=settings.BASE_DIR,
        env=servers.env,
        stdout=subprocess.DEVNULL,
        stderr=worker_log,
    )  # fmt: skip
    try:
        yield servers, worker, (tmp_path / "web.log", tmp_path / "worker.log")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        servers.stop()
        web_log.close()
        worker_log.close()
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
    servers, worker, logs = deployment
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
        # A quiet dashboard stays connected (the channel layer's blocking wait on Redis
        # outlasts the Redis client's default 5-second read timeout).
        with pytest.raises(TimeoutError):
            socket.recv(timeout=7)

        # The first call also waits for the worker to be up.
        first = _ask(base_url, secret)
        try:
            update = _next_update(socket, timeout=60)
        except (TimeoutError, ConnectionClosed) as error:
            web, work = (path.read_text(errors="replace")[-3000:] for path in logs)
            pytest.fail(
                f"no update ({error!r}); web alive: {servers.procs[0].poll() is None}, worker "
                f"alive: {worker.poll() is None}\n-- web:\n{web}\n-- worker:\n{work}"
            )
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

"""The Celery broker down (issue 12, point 1): a request that was served never fails because
its side effects couldn't be queued; they are kept in the database and, once the broker is
back, beat's task sends them and a worker runs them.

The broker is a Redis server this test owns: down at first (nothing listens on its port), then
started. The worker is a real `celery worker` process on the test's database.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from config.celery import app
from outbox import selectors
from outbox.models import PendingTask
from outbox.tasks import send_pending_tasks
from tests.billing.test_multiprocess_gateway import _database_url
from tests.routing.batches.test_batches_api import HERO, line, upload

pytestmark = pytest.mark.django_db(transaction=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Broker:
    """A Redis server of the test's own, on a port where nothing listens until `start`."""

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.log),
            ]  # fmt: skip
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                assert time.monotonic() < deadline, "the broker did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class Worker:
    """`celery worker` on the broker, the test's database and the simulator."""

    def __init__(self, *, broker: Broker, simulator_url: str, log: Path) -> None:
        self.log = log
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": broker.url,
            "LLMAPI_API_KEY_PEPPER": settings.API_KEY_PEPPER,
            "LLMAPI_SIMULATOR_URL": simulator_url,
            "LLMAPI_FORCE_SIMULATOR": "true",
            "LLMAPI_BILL_SIMULATED": "true",
        }
        if settings.REDIS_URL:
            env["REDIS_URL"] = settings.REDIS_URL
        else:
            env.pop("REDIS_URL", None)
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--pool=solo",
                "-Q",
                "celery,batches",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],  # fmt: skip
            cwd=settings.BASE_DIR,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while b"ready." not in log.read_bytes():
            assert self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, f"the worker did not start\n{self.output()}"
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_bytes().decode(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log_file.close()


@pytest.fixture
def broker(tmp_path, settings) -> Iterator[Broker]:
    """Tasks go to a real broker (not run in place, as elsewhere in the suite), which is down."""
    down = Broker(tmp_path / "broker.log")
    saved = app.conf.task_always_eager, app.conf.broker_url
    app.conf.task_always_eager = False
    app.conf.broker_url = down.url
    settings.BATCH_DISPATCH = True  # a new batch asks a worker to run it, as in production
    settings.OUTBOX_BROKER_DOWN_SECONDS = 0
    yield down
    app.conf.task_always_eager, app.conf.broker_url = saved
    down.stop()


def test_broker_down_requests_are_served_and_their_tasks_run_once_it_returns(
    openai_client, sim, broker, tmp_path
):
    # A chat completion answers, quickly, with the broker down.
    started = time.monotonic()
    reply = openai_client.chat.completions.create(
        model=HERO, messages=[{"role": "user", "content": "hi"}], max_tokens=8
    )
    assert reply.choices[0].message.content
    assert time.monotonic() - started < 2

    # A batch is created (before: its on_commit hook raised, and the client saw a 500 for a
    # batch that existed; a retry made a second one).
    file_id = upload(openai_client, [line(f"r{i}", f"question {i}") for i in range(3)])
    started = time.monotonic()
    batch = openai_client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert time.monotonic() - started < 3
    assert batch.status == "in_progress"
    [kept] = PendingTask.objects.all()
    assert (kept.task, kept.args) == ("routing.batches.tasks.batch_run", [batch.id])

    # Beat's run while the broker is still down keeps it.
    assert send_pending_tasks() == 0
    assert selectors.pending_task_count() == 1
    assert PendingTask.objects.get().attempts == 1

    # The broker returns: the next run sends the task and a worker runs the batch.
    broker.start()
    worker = Worker(broker=broker, simulator_url=sim.url, log=tmp_path / "worker.log")
    try:
        assert send_pending_tasks() == 1
        assert selectors.pending_task_count() == 0
        deadline = time.monotonic() + 60
        while (done := openai_client.batches.retrieve(batch.id)).status != "completed":
            assert time.monotonic() < deadline, f"the batch did not run\n{worker.output()}"
            time.sleep(0.2)
        assert done.request_counts.completed == 3
    finally:
        worker.stop()


def test_kept_tasks_are_given_up_after_the_limit(db, broker, settings, caplog):
    from outbox.services import task_dispatch
    from routing.batches.tasks import batch_sweep

    assert task_dispatch(batch_sweep) is False
    assert selectors.pending_task_count() == 1
    settings.OUTBOX_GIVE_UP_SECONDS = 0
    broker.start()
    assert send_pending_tasks() == 0
    assert selectors.pending_task_count() == 0
    assert "gave up on task routing.batches.tasks.batch_sweep" in caplog.text

"""The platform as an operator runs it, on loopback, in processes the chaos tests can stop,
kill and restart: a Redis of its own (no persistence, so a restart comes back empty), the
provider simulator, the web process (uvicorn serving config.asgi), a Celery worker for the
default queue, one for the batches queue, and Celery beat. They share the test's PostgreSQL
database (committed data: the tests use `transactional_db`).

Each process gets its own process group, so a SIGKILL takes its children with it (a Celery
worker's pool), as when a container is killed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
from celery import Celery
from django.conf import settings
from django.db import connection


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url() -> str:
    """The test database, as the platform's processes reach it."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_until(predicate: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


class Process:
    """One process of the platform: started, checked ready, stopped, killed, restarted."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        logs: Path,
        ready: Callable[[Process], bool],
        ready_timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = logs / f"{name}.log"
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, *, wait: bool = True) -> Process:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n--- start {self.starts} ---\n".encode())
        log.flush()
        self.proc = subprocess.Popen(  # noqa: S603
            self.argv,
            cwd=settings.BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes its children
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def up() -> bool:
            if not self.running:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()[-3000:]}")
            return self.ready(self)

        wait_until(up, timeout=self.ready_timeout, what=f"{self.name} to be ready", every=0.1)

    def _signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """SIGKILL, the whole process group: no shutdown hook runs."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, *, timeout: float = 20.0) -> None:
        """SIGTERM (a graceful stop), then SIGKILL if it doesn't end in time."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=30)
        else:
            self._signal_group(signal.SIGKILL)  # children it may have left

    def restart(self) -> None:
        self.stop()
        self.start()


def _http_ok(url: str) -> Callable[[Process], bool]:
    def check(_: Process) -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def _log_says(text: str) -> Callable[[Process], bool]:
    def check(process: Process) -> bool:
        return text in process.log_text().rpartition(f"--- start {process.starts} ---")[2]

    return check


# The simulator's control API needs its token.
SIM_TOKEN = "chaos-suite-simulator-token"  # noqa: S105 (a test double's, not a secret)
SIM_AUTH = {"Authorization": f"Bearer {SIM_TOKEN}"}


class Platform:
    """Every process of one deployment. `web` is a list (two web pods behind a balancer)."""

    def __init__(self, logs: Path, *, webs: int = 1, env: dict[str, str] | None = None) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.sim_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.web_ports = [free_port() for _ in range(webs)]
        self.env = {
            **os.environ,
            # Development settings with production's parts (PostgreSQL, Redis, Celery on
            # Redis): not the test settings, whose eager Celery belongs to the test process.
            "DJANGO_SETTINGS_MODULE": "config.settings.local",
            "DJANGO_DEBUG": "false",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": database_url(),
            "REDIS_URL": self.redis_url,
            "CELERY_BROKER_URL": self.redis_url,
            "LLMAPI_API_KEY_PEPPER": settings.API_KEY_PEPPER,
            "LLMAPI_SIMULATOR_URL": self.sim_url,
            "LLMAPI_SIMULATOR_CONTROL_TOKEN": SIM_TOKEN,
            "LLMAPI_FORCE_SIMULATOR": "true",
            "LLMAPI_BILL_SIMULATED": "true",  # simulated generations cost $0 otherwise
            # As in production: workers write the request logs, not the web process.
            "LLMAPI_OBS_WRITE_IN_PROCESS": "false",
            # The reconciliation looks at logs older than this (the platform's default is a
            # minute: the suite can't wait that long).
            "LLMAPI_BILLING_RECONCILE_SETTLE": "3",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        py = sys.executable
        self.redis = Process(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(logs),
            ],
            env=self.env,
            logs=logs,
            ready=self._redis_ready,
        )
        self.simulator = Process(
            "simulator",
            [
                py,
                "manage.py",
                "run_simulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.sim_port),
            ],
            env=self.env,
            logs=logs,
            ready=_http_ok(f"{self.sim_url}/_sim/health"),
        )
        self.web = [
            Process(
                f"web{i}",
                [
                    py,
                    "-m",
                    "uvicorn",
                    "config.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                env=self.env,
                logs=logs,
                ready=_http_ok(f"http://127.0.0.1:{port}/healthz"),
            )
            for i, port in enumerate(self.web_ports)
        ]
        celery = [py, "-m", "celery", "-A", "config"]
        self.worker = Process(
            "worker",
            [
                *celery,
                "worker",
                "-Q",
                "celery",
                "--concurrency=2",
                "--hostname=worker@chaos",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            env=self.env,
            logs=logs,
            ready=_log_says(" ready."),
        )
        self.batches = Process(
            "batches",
            [
                *celery,
                "worker",
                "-Q",
                "batches",
                "--concurrency=1",
                "--hostname=batches@chaos",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
            ],
            env=self.env,
            logs=logs,
            ready=_log_says(" ready."),
        )
        self.beat = Process(
            "beat",
            [
                *celery,
                "beat",
                "--loglevel=INFO",
                "--schedule",
                str(logs / "celerybeat-schedule"),
            ],
            env=self.env,
            logs=logs,
            ready=_log_says("beat: Starting"),
        )
        self._celery: Celery | None = None

    def _redis_ready(self, _: Process) -> bool:
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    @property
    def processes(self) -> list[Process]:
        return [self.redis, self.simulator, *self.web, self.worker, self.batches, self.beat]

    def start(self) -> Platform:
        self.redis.start()
        self.simulator.start(wait=False)
        for process in (*self.web, self.worker, self.batches, self.beat):
            process.start(wait=False)
        for process in (self.simulator, *self.web, self.worker, self.batches, self.beat):
            process.wait_ready()
        return self

    def stop(self) -> None:
        if self._celery is not None:
            self._celery.close()
        for process in reversed(self.processes):
            try:
                process.stop(timeout=10)
            except Exception:  # noqa: BLE001 - the others still stop
                process.kill()

    def api(self, i: int = 0) -> str:
        return f"http://127.0.0.1:{self.web_ports[i % len(self.web_ports)]}/v1"

    @property
    def apis(self) -> list[str]:
        return [self.api(i) for i in range(len(self.web_ports))]

    # -- the simulator's control API --------------------------------------------------------

    def sim_set(self, slug: str, **profile: Any) -> dict[str, Any]:
        response = httpx.patch(
            f"{self.sim_url}/_sim/providers/{slug}", json=profile, headers=SIM_AUTH, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def sim_stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.sim_url}/_sim/stats", headers=SIM_AUTH, timeout=10)
        response.raise_for_status()
        return response.json()

    # -- the workers' periodic tasks, run now rather than at beat's next tick -----------------

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            # Not the current app: the suite's tasks (shared_task) follow the current app, and
            # would go to this broker, stopped by the time later tests run.
            self._celery = Celery("chaos", broker=self.redis_url, set_as_current=False)
        return self._celery

    def run_task(self, name: str, *args: Any) -> None:
        """Queue a task for the platform's workers (they run it; nothing waits for it)."""
        try:
            self.celery.send_task(name, args=args, queue="celery")
        except Exception:  # noqa: BLE001 - Redis may be down: beat sends it again later
            self._celery = None

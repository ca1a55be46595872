"""Running the simulator: in the foreground (`serve`, for run_simulator) or in a background
thread on a free port (`SimulatorServer`, for tests and benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import threading
from collections.abc import Mapping
from typing import Any

import httpx
from aiohttp import web

from .app import make_app

# Google's two URL families; the adapters append their own paths to these bases.
VERTEX_PATH = "v1/projects/simulated/locations/us-central1/publishers/google"


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # installed with uvicorn[standard]; ~2x the requests per second
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(
    host: str,
    port: int,
    profiles: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    on_start: Any = None,
    control_token: str = "",
) -> None:
    """Run in the foreground until interrupted."""

    async def main() -> None:
        runner = web.AppRunner(
            make_app(profiles, control_token=control_token),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        await web.TCPSite(runner, host, port, backlog=1024, reuse_address=True).start()
        if on_start is not None:
            on_start()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with asyncio.Runner(loop_factory=_new_loop) as runner, contextlib.suppress(KeyboardInterrupt):
        runner.run(main())


class SimulatorServer:
    """The simulator on 127.0.0.1:<free port> in a daemon thread, with helpers that go
    through its control API (so they work from any thread or event loop).

        with SimulatorServer(profiles={"*": {"latency_ms": 0}}) as sim:
            sim.set("openai", error_rate=1, error_kind="429")
            httpx.post(f"{sim.base_url('openai', 'openai')}/chat/completions", ...)
            assert sim.stats("openai")["requests"] == 1
    """

    def __init__(
        self,
        profiles: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        control_token: str | None = None,
    ) -> None:
        self.profiles = profiles
        self.host = host
        self.port = port
        # The control API's token: a fresh one unless given (the helpers below send it).
        self.control_token = secrets.token_urlsafe(24) if control_token is None else control_token
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, slug: str, wire: str = "openai") -> str:
        """What an adapter's base URL is for `slug` on this simulator ("vertex" for Gemini
        through Vertex AI's URL)."""
        return {
            "openai": f"{self.url}/{slug}/v1",
            "anthropic": f"{self.url}/{slug}",
            "gemini": f"{self.url}/{slug}/v1beta",
            "vertex": f"{self.url}/{slug}/{VERTEX_PATH}",
        }[wire]

    def start(self) -> SimulatorServer:
        # Bind first: the port is known before the thread starts, and no other process can
        # take it in between (pytest-xdist workers each start their own).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"simulator:{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError("the provider simulator failed to start") from self._error
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = self._loop = _new_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main(sock))
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self, sock: socket.socket) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(
            make_app(self.profiles, control_token=self.control_token),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=0.5,
        )
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may have just closed
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- control API helpers ---

    @property
    def control_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.control_token}"}

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=f"{self.url}/_sim", timeout=10, headers=self.control_headers
            )
        return self._client

    def set(self, slug: str, **profile: Any) -> dict[str, Any]:
        """Change a provider's profile (latency_ms, tokens_per_second, error_rate, error_kind,
        retry_after, cut_after_tokens, output_tokens); returns the provider's new state."""
        response = self.client.patch(f"/providers/{slug}", json=profile)
        response.raise_for_status()
        return response.json()

    def script(self, slug: str, *replies: str) -> dict[str, Any]:
        """Queue exact answers for the provider's next chat requests, in order."""
        response = self.client.post(f"/providers/{slug}/replies", json={"replies": list(replies)})
        response.raise_for_status()
        return response.json()

    def last_request(self, slug: str) -> dict[str, Any] | None:
        """The JSON body of the provider's last chat request, exactly as it was sent."""
        response = self.client.get(f"/providers/{slug}/last_request")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()["body"]

    def get(self, slug: str) -> dict[str, Any]:
        response = self.client.get(f"/providers/{slug}")
        response.raise_for_status()
        return response.json()

    def stats(self, slug: str | None = None) -> dict[str, Any]:
        """One provider's counters (requests, streamed, ok, errors by kind, tokens), or all."""
        if slug is not None:
            return self.get(slug)["stats"]
        response = self.client.get("/stats")
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Profiles back to their defaults, counters to zero, the prompt cache forgotten."""
        self.client.post("/reset").raise_for_status()

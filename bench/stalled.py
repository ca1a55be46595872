"""One provider stalled: what it costs the requests of a model with two providers.

Not a test: a measurement, run by hand. `openai/gpt-4.1-mini` is served by `openai` (cheapest,
tried first) and `openrouter`, both played by the provider simulator at their catalog profiles
(~400 ms to the first token, ~90 tokens/s). For each mode (streamed, non-streamed) a fresh
gateway process gets a warm-up with both providers healthy (so their figures are measured, as
in production), then `openai` goes silent (it accepts the request and never answers) and
--requests requests at --concurrency are timed from send to the last byte.

    .venv/bin/python bench/stalled.py
    .venv/bin/python bench/stalled.py --requests 100 --concurrency 4 --modes stream,plain

It starts the simulator and one uvicorn gateway per mode on loopback (production settings,
PostgreSQL and Redis as in bench/run.py: the database --database is its own, created afresh;
nothing in Redis is flushed, every run's key is new) and stops them at the end. Run it from a
checkout of the code to measure, e.g. a temporary worktree of the code before a change.
"""

# ruff: noqa: S603, S607 - a local tool that runs its own fixed commands on loopback

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"
LOGS = ROOT / "bench" / "results" / "logs"
MODEL = "openai/gpt-4.1-mini"
STALLED, OTHER = "openai", "openrouter"


def log(msg: str) -> None:
    print(f"[stalled {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(argv: list[str], env: dict, logfile: Path) -> subprocess.Popen:
    out = open(logfile, "wb")  # noqa: SIM115 - the child keeps it; closed with the process
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_ready(proc: subprocess.Popen, url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode} while starting")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"nothing answered 200 on {url} within {timeout:.0f} s")


def run(argv: list[str], env: dict) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[1:3])} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def gateway_env(args, sim_url: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and not k.startswith(("DJANGO_", "LLMAPI_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        LLMAPI_API_KEY_PEPPER=secrets.token_urlsafe(32),
        LLMAPI_METRICS_TOKEN=secrets.token_urlsafe(32),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
        EMAIL_HOST="localhost",
        DATABASE_URL=f"{args.postgres_url.rstrip('/')}/{args.database}",
        REDIS_URL=args.redis_url,
        LLMAPI_SIMULATOR_URL=sim_url,
        LLMAPI_FORCE_SIMULATOR="true",
        PYTHONUNBUFFERED="1",
    )
    return env


def prepare(args, env: dict) -> str:
    """A fresh database of this script's own, the catalog, and an API key."""
    import psycopg

    with psycopg.connect(f"{args.postgres_url.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')
    run([str(PY), "manage.py", "migrate", "--noinput"], env)
    run([str(PY), "manage.py", "load_catalog"], env)
    out = run(
        [
            str(PY), "manage.py", "create_api_key",
            "--email", "stalled@example.com", "--org", "Stalled", "--name", "bench",
        ],
        env,
    )  # fmt: skip
    return out.strip().splitlines()[-1]


async def one(client: httpx.AsyncClient, url: str, body: dict) -> dict:
    """One request: its time to the last byte, its status and the provider that answered."""
    started = time.perf_counter()
    provider = error = None
    try:
        if body.get("stream"):
            async with client.stream("POST", url, json=body) as response:
                status = response.status_code
                async for line in response.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    event = json.loads(line.removeprefix("data: "))
                    provider = provider or event.get("provider")
                    if event.get("error"):
                        error = event["error"].get("code")
        else:
            response = await client.post(url, json=body)
            status = response.status_code
            reply = response.json()
            provider = reply.get("provider")
            if status != 200:
                error = (reply.get("error") or {}).get("code")
    except httpx.HTTPError as exc:
        status, error = 0, type(exc).__name__
    return {
        "seconds": time.perf_counter() - started,
        "status": status,
        "provider": provider,
        "error": error,
    }


async def load(url: str, key: str, body: dict, requests: int, concurrency: int) -> list[dict]:
    results: list[dict] = []
    left = iter(range(requests))
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=300) as client:

        async def worker() -> None:
            for _ in left:
                results.append(await one(client, url, body))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def summary(mode: str, results: list[dict], wall: float) -> dict:
    seconds = [r["seconds"] for r in results]
    return {
        "mode": mode,
        "requests": len(results),
        "ok": sum(r["status"] == 200 and not r["error"] for r in results),
        "by_provider": {
            p: sum(r["provider"] == p for r in results) for p in sorted({STALLED, OTHER})
        },
        "errors": sorted({str(r["error"]) for r in results if r["error"]}),
        "p50": statistics.median(seconds),
        "p90": percentile(seconds, 0.90),
        "p99": percentile(seconds, 0.99),
        "max": max(seconds),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=20, help="Requests before the stall.")
    parser.add_argument("--modes", default="stream,plain")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="llmapi_bench_stalled")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()

    LOGS.mkdir(parents=True, exist_ok=True)
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = gateway_env(args, sim_url)
    key = prepare(args, env)
    sim = start(
        [str(PY), "manage.py", "run_simulator", "--port", str(sim_port), "--output-tokens", "32"],
        env,
        LOGS / "stalled-simulator.log",
    )
    rows = []
    try:
        wait_ready(sim, f"{sim_url}/_sim/health")
        for mode in args.modes.split(","):
            httpx.post(f"{sim_url}/_sim/reset", timeout=5)
            port = free_port()
            gateway = start(
                [
                    str(UVICORN), "config.asgi:application", "--host", "127.0.0.1",
                    "--port", str(port), "--workers", "1", "--no-access-log",
                    "--log-level", "warning",
                ],
                env,
                LOGS / f"stalled-gateway-{mode}.log",
            )  # fmt: skip
            try:
                wait_ready(gateway, f"http://127.0.0.1:{port}/v1/models")
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                body = {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "Say something short."}],
                    "max_tokens": args.max_tokens,
                }
                # Healthy traffic first, streamed and not, so each figure is measured.
                for warm in (True, False):
                    done = asyncio.run(
                        load(url, key, {**body, "stream": warm}, args.warmup, args.concurrency)
                    )
                    assert all(r["status"] == 200 for r in done), done
                httpx.patch(
                    f"{sim_url}/_sim/providers/{STALLED}",
                    json={"error_rate": 1, "error_kind": "stall"},
                    timeout=5,
                )
                log(f"{mode}: {STALLED} stalled; {args.requests} requests at {args.concurrency}")
                started = time.perf_counter()
                results = asyncio.run(
                    load(
                        url,
                        key,
                        {**body, "stream": mode == "stream"},
                        args.requests,
                        args.concurrency,
                    )
                )
                rows.append(summary(mode, results, time.perf_counter() - started))
                log(json.dumps(rows[-1]))
            finally:
                stop(gateway)
    finally:
        stop(sim)
    print()
    print("| mode | requests | ok | openai / openrouter | p50 s | p90 s | p99 s | max s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['mode']} | {row['requests']} | {row['ok']} "
            f"| {row['by_provider'][STALLED]} / {row['by_provider'][OTHER]} "
            f"| {row['p50']:.2f} | {row['p90']:.2f} | {row['p99']:.2f} | {row['max']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

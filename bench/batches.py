"""Batch throughput: items per second through one batch runner, against the provider simulator
at 0 ms latency, and the upstream concurrency the runner actually reached.

Starts the simulator (a subprocess pinned to core 1), prepares a database (PostgreSQL when
DATABASE_URL is set, as in production; else a fresh SQLite file), uploads a JSONL file of
N chat requests (a share of them duplicates), creates the batch and runs it in this process
(pinned to core 0, as one Celery worker would), then prints a table.

    .venv/bin/python bench/batches.py                       # 5,000 items, 20% duplicates
    .venv/bin/python bench/batches.py --items 20000 --concurrency 16,64
"""

# ruff: noqa: S603, S607 - a local tool that runs its own fixed commands on loopback

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--duplicates", type=float, default=0.2)
    parser.add_argument("--concurrency", default="16,64", help="Runner caps to try.")
    args = parser.parse_args()

    port = free_port()
    workdir = ROOT / "var" / "bench-batches"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ["LLMAPI_FORCE_SIMULATOR"] = "true"
    os.environ["LLMAPI_SIMULATOR_URL"] = f"http://127.0.0.1:{port}"
    os.environ["LLMAPI_BATCH_DISPATCH"] = "false"
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    simulator = subprocess.Popen(
        [
            "taskset", "-c", "1", sys.executable, "manage.py", "run_simulator",
            "--port", str(port), "--latency-ms", "0",
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.sched_setaffinity(0, {0})
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("load_catalog", verbosity=0)
        rows = run(args, settings)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    print()
    print(
        "| runner cap | items | unique upstream calls | seconds | items/s | upstream concurrency |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['cap']} | {row['items']:,} | {row['unique']:,} | {row['seconds']:.2f} "
            f"| {row['items'] / row['seconds']:,.0f} | {row['max_concurrency']} |"
        )


def run(args, settings) -> list[dict]:
    import asyncio

    from accounts import services as account_services
    from accounts.models import User
    from billing import services as billing_services
    from billing.models import LedgerEntry
    from routing.batches import files, runner, services
    from routing.http import close_client
    from routing.snapshot import catalog

    unique = max(1, int(args.items * (1 - args.duplicates)))
    user = User.objects.create_user(email=f"bench-{time.time_ns()}@example.com", password=None)
    org = account_services.organization_create(user=user, name="Bench")
    key, _ = account_services.api_key_create(organization=org, created_by=user, name="bench")
    billing_services.billing_account_for(organization=org)
    billing_services.ledger_post(
        organization=org,
        kind=LedgerEntry.Kind.TOPUP,
        amount_nanousd=10**15,
        reference=f"bench:{org.id}",
    )
    lines = b"".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "google/gemini-3.1-flash-lite",
                    "messages": [{"role": "user", "content": f"question {i % unique}"}],
                    "max_tokens": 16,
                },
            }
        ).encode()
        + b"\n"
        for i in range(args.items)
    )
    rows = []
    for cap in [int(c) for c in args.concurrency.split(",")]:
        settings.BATCH_ORG_CONCURRENCY = cap
        settings.BATCH_GLOBAL_CONCURRENCY = max(cap, settings.BATCH_GLOBAL_CONCURRENCY)
        settings.BATCH_CLAIM_SIZE = max(cap * 2, 64)
        stored = files.file_create(
            organization=org, upload=io.BytesIO(lines), filename="bench.jsonl", purpose="batch"
        )
        batch = services.batch_create(
            organization=org,
            key_id=key.id,
            input_file=stored,
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        catalog.invalidate()
        runner.concurrency["max"] = 0

        async def go(batch_id=batch.id):
            try:
                return await runner.run_batch(batch_id)
            finally:
                await close_client()

        started = time.perf_counter()
        status = asyncio.run(go())
        seconds = time.perf_counter() - started
        assert status == "completed", status
        rows.append(
            {
                "cap": cap,
                "items": args.items,
                "unique": unique,
                "seconds": seconds,
                "max_concurrency": runner.concurrency["max"],
            }
        )
        print(f"cap {cap}: {args.items} items in {seconds:.2f} s", flush=True)
    return rows


if __name__ == "__main__":
    main()

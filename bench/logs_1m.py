"""The logs explorer and the overview with a million request logs on PostgreSQL.

Seeds one organization with N request logs (default 1,000,000) spread over 30 days, 4 models,
4 providers, 20 keys and a few statuses, plus one attempt per log for a tenth of them, with
one INSERT ... SELECT generate_series each (a few seconds per million rows); writes the
matching hourly rollups; then times each page through Django's test client (median of 5, warm)
and prints a table.

    createdb -h 127.0.0.1 -U postgres llmapi_bench_logs
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/llmapi_bench_logs \\
      .venv/bin/python bench/logs_1m.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODELS = ["google/gemini-3.1-flash-lite", "google/gemini-3.1-flash", "openai/gpt-4.1-mini",
          "anthropic/claude-3.5-haiku"]  # fmt: skip
PROVIDERS = ["google-ai-studio", "vertex-ai", "openrouter", "private-vllm"]
STATUSES = ["ok"] * 17 + ["overloaded", "timeout", "rate_limited"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL database of its own (see the docstring).")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ["DJANGO_DEBUG"] = "false"
    os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("load_catalog", verbosity=0)
    org, user, keys = setup()
    started = time.perf_counter()
    seed(org, keys, args.rows)
    print(f"seeded {args.rows:,} logs in {time.perf_counter() - started:.1f} s", flush=True)
    measure(org, user, keys)


def setup():
    import uuid

    from accounts import services
    from accounts.models import User

    user = User.objects.create_user(email=f"bench-{uuid.uuid4().hex[:8]}@example.com")
    org = services.organization_create(user=user, name="Bench logs")
    keys = [
        services.api_key_create(organization=org, created_by=user, name=f"key {i}")[0]
        for i in range(20)
    ]
    return org, user, keys


def seed(org, keys, rows: int) -> None:
    from django.db import connection

    def array(values):
        return "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]"

    key_array = "ARRAY[" + ",".join(f"'{k.id}'::uuid" for k in keys) + "]"
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO observability_requestlog (
                generation_id, organization_id, key_id, requested_model, model, provider,
                endpoint_id, status, error_kind, streamed, prompt_tokens, completion_tokens,
                cached_tokens, reasoning_tokens, cost_nanousd, received_at, finished_at,
                gateway_ms, ttft_ms, total_ms, tokens_per_second, attempt_count, written_at)
            SELECT 'gen-' || lpad(to_hex(g), 32, '0'), %s, ({key_array})[1 + g %% 20],
                   ({array(MODELS)})[1 + g %% 4], ({array(MODELS)})[1 + g %% 4],
                   ({array(PROVIDERS)})[1 + (g / 7) %% 4], 1,
                   ({array(STATUSES)})[1 + (g / 3) %% 20], '', g %% 2 = 0,
                   20 + g %% 500, 10 + g %% 300, 0, 0, 1000 + g %% 90000,
                   now() - (g %% 2592000) * interval '1 second',
                   now() - (g %% 2592000) * interval '1 second' + interval '900 milliseconds',
                   1.5, 300 + g %% 400, 900, 120, 1, now()
            FROM generate_series(1, %s) AS g
            """,  # noqa: S608 - fixed values of this script
            [org.id, rows],
        )
        cursor.execute(
            """
            INSERT INTO observability_requestattempt (log_id, index, provider, model, outcome,
                http_status, message, offset_ms, duration_ms, ttft_ms, hedged)
            SELECT id, 0, provider, model, status, 200, '', 1.5, 850, ttft_ms, false
            FROM observability_requestlog WHERE organization_id = %s AND id %% 10 = 0
            """,
            [org.id],
        )
        cursor.execute("ANALYZE observability_requestlog")
        cursor.execute("ANALYZE observability_requestattempt")
    # The overview reads rollups, never logs: build them from the seeded rows once.
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO observability_usagerollup (organization_id, hour, model, provider,
                key_id, requests, errors, rate_limited, prompt_tokens, completion_tokens,
                cached_tokens, reasoning_tokens, cost_nanousd, latency_ms_sum, ttft_ms_sum,
                ttft_count, lat_le_250ms, lat_le_500ms, lat_le_1s, lat_le_2500ms, lat_le_5s,
                lat_le_10s, lat_le_30s, lat_gt_30s)
            SELECT organization_id, date_trunc('hour', received_at), model, provider, key_id,
                count(*), count(*) FILTER (WHERE status IN ('overloaded', 'timeout')),
                count(*) FILTER (WHERE status = 'rate_limited'), sum(prompt_tokens),
                sum(completion_tokens), 0, 0, sum(cost_nanousd), sum(total_ms), sum(ttft_ms),
                count(*), 0, 0, count(*), 0, 0, 0, 0, 0
            FROM observability_requestlog WHERE organization_id = %s
            GROUP BY 1, 2, 3, 4, 5
            """,
            [org.id],
        )


def measure(org, user, keys) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from observability.models import RequestLog

    client = Client()
    client.force_login(user)
    base = f"/o/{org.id}"
    deep = (
        RequestLog.objects.filter(organization=org)
        .order_by("-received_at", "-id")[500_000:]
        .values_list("received_at", "id")
        .first()
    )
    from observability.selectors import encode_cursor

    class _Row:
        received_at, id = deep

    pages = [
        ("overview (30-day figures and charts)", f"{base}/"),
        ("logs, first page", f"{base}/logs/"),
        ("logs, by model", f"{base}/logs/?model={MODELS[2]}"),
        ("logs, by key", f"{base}/logs/?key={keys[7].id}"),
        ("logs, by status (errors)", f"{base}/logs/?status=timeout"),
        ("logs, by provider + model", f"{base}/logs/?provider={PROVIDERS[1]}&model={MODELS[1]}"),
        ("logs, a page 500,000 rows deep", f"{base}/logs/?cursor={encode_cursor(_Row)}"),
        ("log detail", f"{base}/logs/gen-{4242:032x}/"),
        ("usage by model, 30 days", f"{base}/usage/"),
        ("usage by key, 90 days", f"{base}/usage/?by=key&days=90"),
        ("public model page (platform totals)", "/models/google/gemini-3.1-flash-lite/"),
    ]
    print()
    print("| page | median ms (5 runs) | queries |")
    print("|---|---|---|")
    for name, url in pages:
        client.get(url)  # warm
        times = []
        for _ in range(5):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = client.get(url)
                if getattr(response, "streaming", False):
                    b"".join(response.streaming_content)
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        print(f"| {name} | {statistics.median(times):.1f} | {len(queries)} |", flush=True)
    export = f"{base}/logs/export.csv?range=1d"
    started = time.perf_counter()
    response = client.get(export)
    content = response.streaming_content
    if hasattr(content, "__anext__"):
        import asyncio

        first = asyncio.run(anext(content))
    else:
        first = next(iter(content))
    print(f"| CSV export, first chunk | {(time.perf_counter() - started) * 1000:.1f} | – |")
    assert first


if __name__ == "__main__":
    main()

"""One benchmark cell: C workers, each looping requests over one keep-alive connection pool for a
fixed duration after a short warm-up. Prints one JSON object on stdout.

Run by bench/run.py as its own process (pinned with taskset beside the simulator), e.g.

    python bench/loadgen.py --url http://127.0.0.1:8000/v1/chat/completions \
        --body '{"model": "...", ...}' --header 'authorization: Bearer KEY' \
        --concurrency 16 --duration 8 --warmup 1 --stream --cpu-pid 1234

Per request: total latency (request sent -> body fully read), time to first byte (non-stream:
response headers; stream: the first SSE data chunk), status. Only requests that *start* inside the
measured window count; requests still running when it closes are awaited but not counted.
The server's CPU time (utime+stime of --cpu-pid and its descendants, from /proc) is read at the
window's start and end, so CPU per request covers exactly the counted window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import aiohttp

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(x) for x in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime (fields 14, 15 of /proc/<pid>/stat) of every process in the trees."""
    ticks = 0
    for root in pids:
        for pid in process_tree(root):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def core_busy_seconds(core: int) -> float:
    """Busy time (all but idle and iowait) of one CPU core, from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                fields = [int(x) for x in line.split()[1:]]
                return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK
    return 0.0


class Window:
    def __init__(self) -> None:
        self.measuring = False
        self.closed = False
        self.in_flight = 0


async def one_request(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict, stream: bool
) -> tuple[float, float, int, str | None]:
    """(latency s, ttfb s, status, error) of one request."""
    started = time.perf_counter()
    ttfb = 0.0
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            status = resp.status
            if not stream:
                ttfb = time.perf_counter() - started
                data = await resp.read()
                latency = time.perf_counter() - started
                if status != 200:
                    return latency, ttfb, status, data[:200].decode(errors="replace")
                # Cheap sanity check: a completion with its usage, not an error object.
                if b'"usage"' not in data and b'"usageMetadata"' not in data:
                    return latency, ttfb, status, "no usage in body"
                return latency, ttfb, status, None
            tail = b""
            first = True
            async for chunk in resp.content.iter_any():
                if first and b"data:" in chunk:
                    ttfb = time.perf_counter() - started
                    first = False
                tail = (tail + chunk)[-256:]
            latency = time.perf_counter() - started
            if status != 200:
                return latency, ttfb, status, tail[:200].decode(errors="replace")
            if first:
                return latency, latency, status, "no SSE data"
            return latency, ttfb, status, None
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        return time.perf_counter() - started, 0.0, 0, f"{type(error).__name__}: {error}"


async def worker(session, args, body, headers, window: Window, out: list) -> None:
    while not window.closed:
        counted = window.measuring
        window.in_flight += 1
        try:
            result = await one_request(session, args.url, body, headers, args.stream)
        finally:
            window.in_flight -= 1
        if counted:
            out.append(result)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


async def main(args) -> dict:
    body = args.body.encode()
    headers = {"content-type": "application/json"}
    for h in args.header:
        name, _, value = h.partition(":")
        headers[name.strip()] = value.strip()
    if args.stream:
        headers["accept"] = "text/event-stream"
    connector = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    window = Window()
    results: list = []
    # aiohttp asks for gzip/deflate and decompresses, as the OpenAI SDK's httpx does: a server
    # that compresses (LiteLLM does) pays for it, as it would with real clients.
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(worker(session, args, body, headers, window, results))
            for _ in range(args.concurrency)
        ]
        await asyncio.sleep(args.warmup)
        cpu0 = cpu_seconds(args.cpu_pid)
        core0 = core_busy_seconds(args.core)
        t0 = time.perf_counter()
        window.measuring = True
        await asyncio.sleep(args.duration)
        window.measuring = False
        t1 = time.perf_counter()
        cpu1 = cpu_seconds(args.cpu_pid)
        core1 = core_busy_seconds(args.core)
        in_flight = window.in_flight
        window.closed = True
        await asyncio.gather(*tasks)
    elapsed = t1 - t0
    ok = [r for r in results if r[3] is None]
    errors = [r for r in results if r[3] is not None]
    lat = [r[0] * 1000 for r in ok]
    ttfb = [r[1] * 1000 for r in ok]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    cpu = cpu1 - cpu0
    return {
        "concurrency": args.concurrency,
        "stream": args.stream,
        "duration_s": elapsed,
        "requests": len(results),
        "ok": len(ok),
        "errors": len(errors),
        "error_samples": sorted({e[3] for e in errors})[:5],
        # Requests still unanswered when the window closed; with no request answered at all the
        # server stalled (they are awaited, up to --timeout, before this process ends).
        "in_flight_at_end": in_flight,
        "stalled": not ok,
        "statuses": statuses,
        "rps": len(ok) / elapsed if elapsed else 0.0,
        "p50_ms": percentile(lat, 0.50),
        "p90_ms": percentile(lat, 0.90),
        "p99_ms": percentile(lat, 0.99),
        "ttfb_p50_ms": percentile(ttfb, 0.50),
        "ttfb_p99_ms": percentile(ttfb, 0.99),
        "server_cpu_s": cpu,
        "server_cpu_pct": 100 * cpu / elapsed if elapsed else 0.0,
        "cpu_ms_per_req": 1000 * cpu / len(ok) if ok else float("nan"),
        # What else kept the server's core busy (other people's work on a shared machine):
        # a noise indicator, ~0 on a quiet machine.
        "core_other_pct": max(0.0, 100 * ((core1 - core0) - cpu) / elapsed) if elapsed else 0.0,
    }


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--body", required=True, help="the JSON body, sent as is")
    p.add_argument("--header", action="append", default=[], help="'name: value', repeatable")
    p.add_argument("--stream", action="store_true")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--cpu-pid", type=int, action="append", default=[], help="server pid(s)")
    p.add_argument("--core", type=int, default=0, help="the core the server is pinned to")
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        summary = runner.run(main(arguments))
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")

"""`make bench`: the gateway side by side with a direct call and with LiteLLM Proxy, in one run.

Starts, all on loopback:
  - the provider simulator (0 ms latency, unlimited tokens/s, 32 output tokens), pinned to core 1;
  - our gateway: ONE uvicorn worker pinned to core 0, production settings, PostgreSQL + Redis,
    authentication, rate limits (high but non-null) and request recording on;
  - LiteLLM Proxy (its own venv, bench/.venv-litellm, from bench/requirements-litellm.txt),
    one worker pinned to core 0, master key, no database, same simulator upstream;
then for each target x mode (non-streamed / streamed, 32 tokens) x concurrency runs a load
generator process (bench/loadgen.py, pinned to core 1 beside the simulator) and prints a table,
bench/results/latest.md and latest.json, and PASS/FAIL against the targets of issue 3, item 8.

Everything it started is stopped at the end, on errors and on Ctrl-C too.

    .venv/bin/python bench/run.py                      # the full run (~6 minutes)
    .venv/bin/python bench/run.py --duration 3 --concurrency 1,64 --targets direct,gateway
"""

# ruff: noqa: S310, S603, S607 - a local tool that runs its own fixed commands on loopback

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = ROOT / ".venv" / "bin" / "python"
UVICORN = ROOT / ".venv" / "bin" / "uvicorn"
LITELLM_VENV = BENCH / ".venv-litellm"
LITELLM_REQS = BENCH / "requirements-litellm.txt"
RESULTS = BENCH / "results"

GATEWAY_CORE = "0"
LOAD_CORE = "1"  # the simulator and the load generator share the other core

PROMPT = [{"role": "user", "content": "Say hello in a few words."}]
MAX_TOKENS = 32

# The targets of issue 3, item 8.
NS_THROUGHPUT_X = 4.0
ST_THROUGHPUT_X = 8.0
ADDED_P50_FRACTION = 0.25
NO_COLLAPSE_FRACTION = 0.80


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if bench/run.py dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Processes:
    """What this run started; each in its own process group, stopped by its own pid."""

    def __init__(self) -> None:
        self.started: list[tuple[str, subprocess.Popen, object]] = []

    def start(self, name: str, argv: list[str], env: dict, logfile: Path) -> subprocess.Popen:
        out = open(logfile, "wb")  # noqa: SIM115 - closed in stop_all
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.started.append((name, proc, out))
        log(f"started {name} (pid {proc.pid}), log {logfile.relative_to(ROOT)}")
        return proc

    def stop_all(self) -> None:
        for _name, proc, _ in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, proc, out in reversed(self.started):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            out.close()
            log(f"stopped {name} (pid {proc.pid})")
        self.started.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    method: str,
    url: str,
    *,
    body: dict | None = None,
    headers: dict | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_ready(name: str, proc: subprocess.Popen, url: str, logfile: Path, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = logfile.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{name} exited with {proc.returncode} while starting:\n{tail}")
        with contextlib.suppress(OSError):
            status, _ = http("GET", url, timeout=2)
            if status == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"{name} did not answer 200 on {url} within {timeout:.0f} s")


def run(argv: list[str], env: dict, *, what: str) -> str:
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --- set-up ------------------------------------------------------------------------------------


def ensure_litellm_venv() -> str:
    """bench/.venv-litellm from the pinned requirements; reinstalled when they change."""
    stamp = LITELLM_VENV / ".requirements"
    wanted = LITELLM_REQS.read_text()
    python = LITELLM_VENV / "bin" / "python"
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        log("installing LiteLLM Proxy into bench/.venv-litellm (first run: a few minutes)")
        if not python.exists():
            run([sys.executable, "-m", "venv", str(LITELLM_VENV)], os.environ.copy(), what="venv")
        run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(LITELLM_REQS)],
            os.environ.copy(),
            what="pip install -r bench/requirements-litellm.txt",
        )
        stamp.write_text(wanted)
    return run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        os.environ.copy(),
        what="litellm version",
    ).strip()


def gateway_env(args, sim_url: str) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        # No real provider is ever called: every endpoint is played by the simulator.
        if not k.endswith("_API_KEY") and not k.startswith(("DJANGO_", "LLMAPI_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        LLMAPI_API_KEY_PEPPER=secrets.token_urlsafe(32),
        LLMAPI_METRICS_TOKEN=secrets.token_urlsafe(32),  # production requires one for /metrics
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


def prepare_database(args, env: dict) -> None:
    """A fresh llmapi_bench database and a flushed bench Redis db: every run starts equal."""
    import psycopg  # from the project venv
    import redis

    with psycopg.connect(f"{args.postgres_url.rstrip('/')}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.database}"')
    redis.Redis.from_url(args.redis_url).flushdb()
    log(f"database {args.database} created, {args.redis_url} flushed; migrating")
    for attempt in (1, 2, 3):  # other work on the machine may drop connections now and then
        try:
            run([str(PY), "manage.py", "migrate", "--noinput"], env, what="migrate")
            break
        except SystemExit:
            if attempt == 3:
                raise
            log("migrate failed; trying again")
            time.sleep(2)
    run([str(PY), "manage.py", "load_catalog"], env, what="load_catalog")


def create_key(env: dict) -> tuple[str, dict]:
    key = (
        run(
            [
                str(PY),
                "manage.py",
                "create_api_key",
                "--email",
                "bench@example.com",
                "--org",
                "Bench",
                "--name",
                "bench",
            ],
            env,
            what="create_api_key",
        )
        .strip()
        .splitlines()[-1]
    )
    # High but non-null limits, so the rate limiter runs on every request (the key's and
    # its organization's plan limits, which the bench raises past what it sends).
    script = (
        "from accounts.models import APIKey\n"
        "from billing.models import BillingAccount\n"
        "n = APIKey.objects.update(rpm_limit=10_000_000, tpm_limit=10_000_000)\n"
        "BillingAccount.objects.update(rpm_limit_override=10_000_000, "
        "tpm_limit_override=1_000_000_000)\n"
        "import config.asgi\n"
        "from routing import events\n"
        "import json\n"
        "print(json.dumps({'keys_limited': n, 'sinks': [getattr(s, '__qualname__', repr(s)) "
        "+ ' (' + getattr(s, '__module__', '?') + ')' for s in events._sinks]}))\n"
    )
    out = run([str(PY), "manage.py", "shell", "-c", script], env, what="set key limits")
    info = json.loads(out.strip().splitlines()[-1])
    return key, info


# --- targets -----------------------------------------------------------------------------------


@dataclass
class Target:
    name: str  # row label
    slug: str  # json key
    url: str
    headers: list[str]
    body_ns: dict
    body_st: dict
    cpu_pids: list[int] = field(default_factory=list)
    baseline: str = "direct"  # whose latency "added" is measured against
    core: str = GATEWAY_CORE  # where the server runs (for the "other load on its core" column)
    note: str = ""


def openai_bodies(model: str) -> tuple[dict, dict]:
    ns = {"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS}
    st = {**ns, "stream": True, "stream_options": {"include_usage": True}}
    return ns, st


def messages_bodies(model: str) -> tuple[dict, dict]:
    """Anthropic's Messages API (/v1/messages) for the same prompt."""
    ns = {"model": model, "messages": PROMPT, "max_tokens": MAX_TOKENS}
    return ns, {**ns, "stream": True}


def responses_bodies(model: str) -> tuple[dict, dict]:
    """OpenAI's Responses API (/v1/responses) for the same prompt (nothing stored)."""
    ns = {
        "model": model,
        "input": PROMPT[0]["content"],
        "max_output_tokens": MAX_TOKENS,
        "store": False,
    }
    return ns, {**ns, "stream": True}


def gemini_bodies() -> tuple[dict, dict]:
    body = {
        "contents": [{"role": "user", "parts": [{"text": PROMPT[0]["content"]}]}],
        "generationConfig": {"maxOutputTokens": MAX_TOKENS},
    }
    return body, body


def smoke(target: Target) -> None:
    headers = dict(h.split(": ", 1) for h in target.headers)
    for stream, body in ((False, target.body_ns), (True, target.body_st)):
        url = target.url
        if target.slug == "direct_gemini":
            url = (
                url.replace(":generateContent", ":streamGenerateContent?alt=sse") if stream else url
            )
        status, data = http("POST", url, body=body, headers=headers, timeout=30)
        if status != 200:
            raise SystemExit(
                f"smoke test of {target.name} ({'stream' if stream else 'non-stream'}) answered "
                f"{status}: {data[:500]!r}"
            )


def run_cell(target: Target, stream: bool, concurrency: int, duration: float, warmup: float):
    url = target.url
    body = target.body_st if stream else target.body_ns
    if target.slug == "direct_gemini" and stream:
        url = url.replace(":generateContent", ":streamGenerateContent?alt=sse")
    argv = [
        "taskset",
        "-c",
        LOAD_CORE,
        str(PY),
        str(BENCH / "loadgen.py"),
        "--url",
        url,
        "--body",
        json.dumps(body),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
    ]
    for h in target.headers:
        argv += ["--header", h]
    for pid in target.cpu_pids:
        argv += ["--cpu-pid", str(pid)]
    argv += ["--core", target.core]
    if stream:
        argv.append("--stream")
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=duration + warmup + 120
    )
    if done.returncode != 0:
        raise SystemExit(f"load generator failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report ------------------------------------------------------------------------------------


def fmt(value, digits=1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def add_added_latency(cells: list[dict]) -> None:
    by = {(c["target"], c["mode"], c["concurrency"]): c for c in cells}
    for cell in cells:
        base = by.get((cell["baseline"], cell["mode"], cell["concurrency"]))
        if base is None or cell["target"] == cell["baseline"]:
            cell["added_p50_ms"] = cell["added_p99_ms"] = cell["added_ttfb_p50_ms"] = None
            continue
        cell["added_p50_ms"] = cell["p50_ms"] - base["p50_ms"]
        cell["added_p99_ms"] = cell["p99_ms"] - base["p99_ms"]
        cell["added_ttfb_p50_ms"] = cell["ttfb_p50_ms"] - base["ttfb_p50_ms"]


def table(cells: list[dict], names: dict[str, str]) -> str:
    head = (
        "| target | mode | c | req/s | p50 ms | p99 ms | added p50 | added p99 | TTFB p50 "
        "| added TTFB p50 | errors | server CPU ms/req | server CPU % | other load on its core % |"
    )
    lines = [head, "|" + "---|" * 14]
    for c in cells:
        lines.append(
            f"| {names[c['target']]} | {'stream' if c['mode'] == 'stream' else 'non-stream'} "
            f"| {c['concurrency']} | {fmt(c['rps'], 0)} | {fmt(c['p50_ms'], 2)} "
            f"| {fmt(c['p99_ms'], 2)} | {fmt(c['added_p50_ms'], 2)} | {fmt(c['added_p99_ms'], 2)} "
            f"| {fmt(c['ttfb_p50_ms'], 2)} | {fmt(c['added_ttfb_p50_ms'], 2)} "
            f"| {'STALLED' if c.get('stalled') else c['errors']} "
            f"| {fmt(c['cpu_ms_per_req'], 2)} | {fmt(c['server_cpu_pct'], 0)} "
            f"| {'–' if c['core'] == LOAD_CORE else fmt(c['core_other_pct'], 0)} |"
        )
    return "\n".join(lines)


def verdicts(cells: list[dict], ours: str, theirs: str, label: str) -> list[dict]:
    def rows(target, mode):
        return [c for c in cells if c["target"] == target and c["mode"] == mode]

    def ok(value) -> bool:
        return value is not None and not math.isnan(value)

    out = []
    for mode, factor, what in (
        ("non-stream", NS_THROUGHPUT_X, "requests/s"),
        ("stream", ST_THROUGHPUT_X, "streams/s"),
    ):
        mine, peer = rows(ours, mode), rows(theirs, mode)
        if not mine:
            continue
        best = max(c["rps"] for c in mine)
        errors = sum(c["errors"] for c in mine)
        stalled = [c["concurrency"] for c in mine if c.get("stalled")]
        out.append(
            {
                "target": f"{label} {mode}: no errors",
                "measured": f"{errors} errors in {sum(c['requests'] for c in mine):,} requests"
                + (
                    f"; stalled (no request answered in the window) at c={stalled}"
                    if stalled
                    else ""
                ),
                "pass": errors == 0 and not stalled,
            }
        )
        if peer:
            peer_best = max(c["rps"] for c in peer)
            peer_errors = sum(c["errors"] for c in peer)
            if peer_best > 0:
                ratio = best / peer_best
                out.append(
                    {
                        "target": f"{label} {mode}: max {what} >= {factor:g}x LiteLLM",
                        "measured": f"{best:,.0f} vs {peer_best:,.0f} = {ratio:.1f}x"
                        + (f" (LiteLLM had {peer_errors} errors)" if peer_errors else ""),
                        "pass": ratio >= factor,
                    }
                )
            else:
                out.append(
                    {
                        "target": f"{label} {mode}: max {what} >= {factor:g}x LiteLLM",
                        "measured": f"not comparable: LiteLLM answered no request correctly "
                        f"({peer_errors} errors)",
                        "pass": False,
                    }
                )
            m1 = next((c for c in mine if c["concurrency"] == 1), None)
            p1 = next((c for c in peer if c["concurrency"] == 1), None)
            if m1 and p1:
                mine_added, peer_added = m1.get("added_p50_ms"), p1.get("added_p50_ms")
                comparable = ok(mine_added) and ok(peer_added) and peer_added > 0
                out.append(
                    {
                        "target": f"{label} {mode}: added p50 at c=1 <= 1/4 of LiteLLM's",
                        "measured": (
                            f"+{mine_added:.2f} ms vs +{peer_added:.2f} ms "
                            f"= {mine_added / peer_added:.2f}"
                            if comparable
                            else "not comparable (no successful requests)"
                        ),
                        "pass": comparable and mine_added <= ADDED_P50_FRACTION * peer_added,
                    }
                )
        c64 = next((c for c in mine if c["concurrency"] == 64), None)
        if c64 and best > 0:
            share = c64["rps"] / best
            out.append(
                {
                    "target": f"{label} {mode}: c=64 >= {NO_COLLAPSE_FRACTION:.0%} of best",
                    "measured": f"{c64['rps']:,.0f} of {best:,.0f} = {share:.0%}",
                    "pass": share >= NO_COLLAPSE_FRACTION,
                }
            )
    return out


WIRE_OVERHEAD_X = 1.10  # the other client wires' gateway CPU per request, vs chat's


def wire_verdicts(cells: list[dict], ours: str, chat: str, label: str) -> list[dict]:
    """A client wire's overhead against chat completions on the same model and route: the
    gateway's CPU per request at c=16 within 10%, and the best throughput within 10%."""
    out = []
    for mode in ("non-stream", "stream"):
        mine = {c["concurrency"]: c for c in cells if c["target"] == ours and c["mode"] == mode}
        base = {c["concurrency"]: c for c in cells if c["target"] == chat and c["mode"] == mode}
        level = 16 if 16 in mine and 16 in base else next(iter(set(mine) & set(base)), None)
        if level is None:
            continue
        cpu, cpu_base = mine[level]["cpu_ms_per_req"], base[level]["cpu_ms_per_req"]
        out.append(
            {
                "target": f"{label} {mode}: gateway CPU/request <= {WIRE_OVERHEAD_X:.2f}x chat's",
                "measured": f"{cpu:.3f} vs {cpu_base:.3f} ms at c={level} = {cpu / cpu_base:.2f}x"
                if cpu_base
                else "not comparable",
                "pass": bool(cpu_base) and cpu <= WIRE_OVERHEAD_X * cpu_base,
            }
        )
        best = max(c["rps"] for c in mine.values())
        best_base = max(c["rps"] for c in base.values())
        errors = sum(c["errors"] for c in mine.values())
        out.append(
            {
                "target": f"{label} {mode}: max throughput >= {1 / WIRE_OVERHEAD_X:.0%} of chat's,"
                " no errors",
                "measured": f"{best:,.0f} vs {best_base:,.0f} req/s, {errors} errors",
                "pass": errors == 0 and best_base > 0 and best * WIRE_OVERHEAD_X >= best_base,
            }
        )
    return out


def verdict_table(rows: list[dict]) -> str:
    lines = ["| target | measured | result |", "|---|---|---|"]
    for v in rows:
        lines.append(f"| {v['target']} | {v['measured']} | {'PASS' if v['pass'] else 'FAIL'} |")
    return "\n".join(lines)


def machine_info() -> dict:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions(litellm_version: str | None) -> dict:
    out = run(
        [
            str(PY),
            "-c",
            "import importlib.metadata as m, json; print(json.dumps({n: m.version(n) for n in "
            "('django','uvicorn','uvloop','httptools','httpx','httpx-aiohttp','aiohttp','adrf',"
            "'djangorestframework','orjson','redis','psycopg')}))",
        ],
        os.environ.copy(),
        what="versions",
    )
    data = json.loads(out)
    commit = "?"
    with contextlib.suppress(Exception):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        # Read-only: no index refresh written (GIT_OPTIONAL_LOCKS=0).
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        ).stdout
        commit += " (+ uncommitted changes)" if dirty.strip() else ""
    data["llmapi"] = commit
    data["litellm"] = litellm_version
    return data


# --- main --------------------------------------------------------------------------------------


def _interrupt(*_):
    raise KeyboardInterrupt


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--duration",
        type=float,
        default=float(os.environ.get("BENCH_DURATION", 8)),
        help="measured seconds per cell (default 8, env BENCH_DURATION)",
    )
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per cell")
    p.add_argument(
        "--target-warmup",
        type=float,
        default=2.0,
        help="seconds of load (c=16, both modes) before a target's first cell",
    )
    p.add_argument("--concurrency", default="1,16,64")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over every cell; each cell keeps its best-throughput round (noisy machines)",
    )
    p.add_argument(
        "--targets",
        default=(
            "direct,gateway,litellm,direct_gemini,gateway_hero,gateway_messages,gateway_responses"
        ),
        help="any of direct,gateway,litellm,direct_gemini,gateway_hero,gateway_messages,"
        "gateway_responses",
    )
    p.add_argument("--modes", default="non-stream,stream")
    p.add_argument("--postgres-url", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument("--database", default="llmapi_bench")
    p.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/11",
        help="a Redis db of the benchmark's own: it is flushed at the start",
    )
    p.add_argument(
        "--gateway-app",
        default="config.asgi:application",
        help="the ASGI app uvicorn serves (to A/B a candidate change)",
    )
    p.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra environment variable for the gateway (repeatable), e.g. a setting to A/B",
    )
    p.add_argument(
        "--pythonpath",
        default="",
        help="prepended to the gateway's PYTHONPATH (with --gateway-app)",
    )
    p.add_argument(
        "--hold",
        type=float,
        default=0,
        help="keep the servers up this many seconds after the run (for profiling)",
    )
    p.add_argument(
        "--output",
        default=str(RESULTS / "latest"),
        help="write OUTPUT.md and OUTPUT.json (default bench/results/latest)",
    )
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    levels = [int(c) for c in args.concurrency.split(",")]
    for tool in ("taskset",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (util-linux)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = RESULTS / "logs"
    logs.mkdir(exist_ok=True)

    started_at = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()
    litellm_version = ensure_litellm_venv() if "litellm" in wanted else None

    procs = Processes()
    signal.signal(signal.SIGTERM, _interrupt)
    # Even when started in the background (where a shell leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sim_port, gw_port, ll_port = free_port(), free_port(), free_port()
        sim_url = f"http://127.0.0.1:{sim_port}"
        env = gateway_env(args, sim_url)
        for item in args.gateway_env:
            name, _, value = item.partition("=")
            env[name] = value
        if args.pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (args.pythonpath, env.get("PYTHONPATH", "")) if p
            )
        prepare_database(args, env)
        key, key_info = create_key(env)
        log(f"bench key created; sinks on routing.events: {key_info['sinks'] or 'none'}")

        sim_log = logs / "simulator.log"
        sim = procs.start(
            "simulator",
            [
                "taskset",
                "-c",
                LOAD_CORE,
                str(PY),
                "manage.py",
                "run_simulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(sim_port),
                "--latency-ms",
                "0",
                "--tokens-per-second",
                "0",
                "--output-tokens",
                str(MAX_TOKENS),
            ],
            env,
            sim_log,
        )
        wait_ready("simulator", sim, f"{sim_url}/_sim/health", sim_log)

        targets: dict[str, Target] = {}
        ns, st = openai_bodies("gpt-4.1-mini")
        targets["direct"] = Target(
            "direct (simulator, OpenAI wire)",
            "direct",
            f"{sim_url}/openai/v1/chat/completions",
            ["authorization: Bearer simulated"],
            ns,
            st,
            [sim.pid],
            note="server CPU = the simulator's",
            core=LOAD_CORE,
        )
        gns, gst = gemini_bodies()
        targets["direct_gemini"] = Target(
            "direct (simulator, Gemini wire)",
            "direct_gemini",
            f"{sim_url}/google-ai-studio/v1beta/models/gemini-3.1-flash-lite:generateContent",
            ["x-goog-api-key: simulated"],
            gns,
            gst,
            [sim.pid],
            baseline="direct_gemini",
            note="server CPU = the simulator's",
            core=LOAD_CORE,
        )

        if {"gateway", "gateway_hero", "gateway_messages", "gateway_responses"} & set(wanted):
            gw_log = logs / "gateway.log"
            gw = procs.start(
                "gateway",
                [
                    "taskset",
                    "-c",
                    GATEWAY_CORE,
                    str(UVICORN),
                    args.gateway_app,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(gw_port),
                    "--workers",
                    "1",
                    "--loop",
                    "uvloop",
                    "--http",
                    "httptools",
                    "--no-access-log",
                    "--no-server-header",
                    "--proxy-headers",
                    "--log-level",
                    "warning",
                ],
                env,
                gw_log,
            )
            wait_ready("gateway", gw, f"http://127.0.0.1:{gw_port}/v1/models", gw_log)
            gw_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
            ons, ost = openai_bodies("openai/gpt-4.1-mini")
            targets["gateway"] = Target(
                "LLM API (gpt-4.1-mini, OpenAI wire)",
                "gateway",
                gw_url,
                [f"authorization: Bearer {key}"],
                ons,
                ost,
                [gw.pid],
            )
            hns, hst = openai_bodies("google/gemini-3.1-flash-lite")
            targets["gateway_hero"] = Target(
                "LLM API hero (gemini-3.1-flash-lite, Gemini wire)",
                "gateway_hero",
                gw_url,
                [f"authorization: Bearer {key}"],
                hns,
                hst,
                [gw.pid],
                baseline="direct_gemini",
            )

            # The other two client wires, same hero model and route: their overhead over the
            # chat completions row is the translation to and from the client's format.
            for slug, path, label, bodies in (
                ("gateway_messages", "messages", "Anthropic Messages API", messages_bodies),
                ("gateway_responses", "responses", "OpenAI Responses API", responses_bodies),
            ):
                wns, wst = bodies("google/gemini-3.1-flash-lite")
                targets[slug] = Target(
                    f"LLM API hero via {label} (/v1/{path})",
                    slug,
                    f"http://127.0.0.1:{gw_port}/v1/{path}",
                    [f"authorization: Bearer {key}"],
                    wns,
                    wst,
                    [gw.pid],
                    baseline="direct_gemini",
                )

        if "litellm" in wanted:
            ll_log = logs / "litellm.log"
            master = "sk-bench-" + secrets.token_hex(16)
            ll_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
            ll_env.update(
                LITELLM_MASTER_KEY=master,
                BENCH_SIM_OPENAI_BASE=f"{sim_url}/openai/v1",
                LITELLM_LOG="ERROR",
                LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the cost map at start
                LITELLM_TELEMETRY="False",  # a no-op flag in this version; kept for older ones
                DISABLE_ADMIN_UI="True",
                PYTHONUNBUFFERED="1",
            )
            ll_env.pop("DATABASE_URL", None)
            ll = procs.start(
                "litellm",
                [
                    "taskset",
                    "-c",
                    GATEWAY_CORE,
                    str(LITELLM_VENV / "bin" / "litellm"),
                    "--config",
                    str(BENCH / "litellm.yaml"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ll_port),
                    "--num_workers",
                    "1",
                ],
                ll_env,
                ll_log,
            )
            wait_ready(
                "litellm", ll, f"http://127.0.0.1:{ll_port}/health/liveliness", ll_log, timeout=180
            )
            lns, lst = openai_bodies("openai/gpt-4.1-mini")
            targets["litellm"] = Target(
                f"LiteLLM Proxy {litellm_version}",
                "litellm",
                f"http://127.0.0.1:{ll_port}/v1/chat/completions",
                [f"authorization: Bearer {master}"],
                lns,
                lst,
                [ll.pid],
            )

        order = [
            t
            for t in (
                "direct",
                "gateway",
                "litellm",
                "direct_gemini",
                "gateway_hero",
                "gateway_messages",
                "gateway_responses",
            )
            if t in wanted
        ]
        if "direct_gemini" not in order:
            for name in ("gateway_hero", "gateway_messages", "gateway_responses"):
                if name in targets:
                    targets[name].baseline = "direct"
        for name in order:
            smoke(targets[name])
        log(
            "all targets answered; measuring "
            f"{len(order)} targets x {len(modes)} modes x {len(levels)} concurrency levels, "
            f"{args.duration:g} s each"
        )

        for name in order:
            if args.target_warmup > 0:
                for mode in modes:
                    run_cell(targets[name], mode == "stream", 16, args.target_warmup, 0)
        # Cell-major order (every target back to back at the same mode and concurrency), so a
        # burst of other load on the machine hits the compared rows alike. With
        # --repeat, whole rounds repeat and each cell keeps its best-throughput round.
        best: dict[tuple[str, str, int], dict] = {}
        for round_no in range(1, args.repeat + 1):
            for mode in modes:
                for level in levels:
                    for name in order:
                        target = targets[name]
                        result = run_cell(
                            target, mode == "stream", level, args.duration, args.warmup
                        )
                        result.update(
                            target=name, mode=mode, baseline=target.baseline, core=target.core
                        )
                        key = (name, mode, level)
                        if key not in best or result["rps"] > best[key]["rps"]:
                            result["round"] = round_no
                            best[key] = result
                        log(
                            f"{name:13} {mode:10} c={level:<3} {result['rps']:8.0f} req/s  "
                            f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                            f"errors {result['errors']}"
                            f"{' STALLED' if result['stalled'] else ''}  "
                            f"cpu {result['cpu_ms_per_req']:.2f} ms/req  "
                            f"other load on its core {result['core_other_pct']:.0f}%"
                            + (f"  (round {round_no})" if args.repeat > 1 else "")
                        )
                        if result["errors"]:
                            log(f"  error samples: {result['error_samples']}")
        cells = [best[(name, mode, level)] for name in order for mode in modes for level in levels]

        if args.hold > 0:
            pids = ", ".join(f"{n} {p.pid}" for n, p, _ in procs.started)
            log(f"holding the servers for {args.hold:g} s ({pids})")
            time.sleep(args.hold)
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    finally:
        procs.stop_all()

    load_after = os.getloadavg()
    add_added_latency(cells)
    names = {n: t.name for n, t in targets.items()}
    checks = verdicts(cells, "gateway", "litellm", "LLM API")
    hero = verdicts(cells, "gateway_hero", "litellm", "hero (Gemini wire)")
    hero += wire_verdicts(cells, "gateway_messages", "gateway_hero", "/v1/messages")
    hero += wire_verdicts(cells, "gateway_responses", "gateway_hero", "/v1/responses")

    report = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "settings": {
            "duration_s": args.duration,
            "repeat": args.repeat,
            "warmup_s": args.warmup,
            "concurrency": levels,
            "output_tokens": MAX_TOKENS,
            "gateway": f"uvicorn {args.gateway_app}, 1 worker, uvloop + httptools, taskset -c 0, "
            "config.settings.production, PostgreSQL + Redis",
            "litellm": "litellm --num_workers 1, taskset -c 0, master key, no database",
            "simulator_and_load": "taskset -c 1",
            "request_recording_sinks": key_info["sinks"],
            "rate_limits": "key rpm/tpm 10,000,000 (Redis limiter runs on every request)",
        },
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "versions": versions(litellm_version),
        "cells": cells,
        "targets": checks,
        "hero_targets": hero,
    }
    md = render_markdown(report, names)
    out = Path(args.output)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(md)
    print(md)
    log(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    if out.resolve() == (RESULTS / "latest").resolve():
        update_readme(md)
        log("updated the latest results in bench/README.md")
    return 0


def update_readme(md: str) -> None:
    """The README's "Latest results" section is the latest default run."""
    readme = BENCH / "README.md"
    text = readme.read_text()
    start, end = "<!-- latest:start -->", "<!-- latest:end -->"
    if start not in text or end not in text:
        return
    body = md.split("\n", 1)[1].replace("\n## ", "\n### ")  # under the README's own heading
    title = md.split("\n", 1)[0].lstrip("# ")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{title}.\n{body.rstrip()}\n{end}{tail}")


def render_markdown(report: dict, names: dict[str, str]) -> str:
    v = report["versions"]
    m = report["machine"]
    la = report["load_average_before"]
    lb = report["load_average_after"]
    s = report["settings"]
    parts = [
        f"# Benchmark results ({report['started_at']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, "
        f"Python {m['python']}. Load average before {la[0]:.2f} / {la[1]:.2f} / {la[2]:.2f}, "
        f"after {lb[0]:.2f} / {lb[1]:.2f} / {lb[2]:.2f}.",
        "",
        f"Versions: LLM API {v['llmapi']} (Django {v['django']}, uvicorn {v['uvicorn']}, "
        f"uvloop {v['uvloop']}, httpx {v['httpx']} on httpx-aiohttp {v['httpx-aiohttp']} / "
        f"aiohttp {v['aiohttp']}), LiteLLM {v['litellm']}.",
        "",
        f"Each cell: {s['warmup_s']:g} s warm-up, {s['duration_s']:g} s measured"
        + (f", best of {s['repeat']} rounds" if s["repeat"] > 1 else "")
        + "; targets back to back per cell; simulator at "
        f"0 ms latency, unlimited tokens/s, {s['output_tokens']} output tokens. Gateway and "
        "LiteLLM: one worker each on core 0; simulator and load generator on core 1. "
        "Added = target minus the direct call at the same mode and concurrency (the hero row "
        "against the direct Gemini-wire call). Server CPU = the target's process tree "
        "(for direct rows: the simulator's). Other load on its core = what else kept the "
        "server's core busy during the cell (other work on the machine; "
        "~0 when quiet): a cell with much of it measured a server that had only part of a core.",
        "",
        f"Gateway: {s['gateway']}. LiteLLM: {s['litellm']}.",
        "",
        "Request recording: "
        + (", ".join(s["request_recording_sinks"]) or "no sink subscribed to routing.events")
        + f". Rate limits: {s['rate_limits']}.",
        "",
        table(report["cells"], names),
        "",
        "## Targets (issue 3, item 8)",
        "",
        verdict_table(report["targets"]),
        "",
        "Extra, for the hero model through the Gemini wire:",
        "",
        verdict_table(report["hero_targets"]),
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())

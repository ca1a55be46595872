"""The books after a fault: the ledger compared with the request logs, through billing's and
observability's selectors, and with what the clients were told.

A generation is lost when what was billed for it differs from what its request log records
(one of them missing included), or when a client was served an answer whose reported cost the
ledger doesn't hold. Zero-cost entries that nothing served are not compared.
"""

from __future__ import annotations

import fcntl
import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from billing import selectors as billing_selectors
from observability import selectors as observability_selectors


@dataclass
class Books:
    # generation -> cost in the ledger's usage entries, and in the request logs
    billed: dict[str, int] = field(repr=False)
    logged: dict[str, int] = field(repr=False)
    problems: dict[str, str] = field(default_factory=dict)  # generation -> what is wrong

    @property
    def lost(self) -> int:
        return len(self.problems)

    def sample(self, n: int = 5) -> list[str]:
        return [f"{g}: {why}" for g, why in list(self.problems.items())[:n]]


def books(organization, *, since: datetime, served: dict[str, int], cut: set[str]) -> Books:
    entries = billing_selectors.ledger_list(organization=organization, limit=1_000_000)
    billed = {e.reference: -e.amount_nanousd for e in entries if e.kind == "usage"}
    logged = {}
    for chunk in observability_selectors.generations_served(
        since=since - timedelta(seconds=5), until=timezone.now() + timedelta(seconds=5)
    ):
        for generation in chunk:
            if generation.organization_id == organization.id:
                logged[generation.generation_id] = generation.cost_nanousd
    result = Books(billed=billed, logged=logged)
    for generation, cost in served.items():
        if generation not in billed:
            result.problems[generation] = f"served at {cost} and not billed"
        elif billed[generation] != cost:
            result.problems[generation] = f"served at {cost}, billed {billed[generation]}"
        elif generation not in logged:
            result.problems[generation] = "served and billed, but not logged"
    for generation in cut:
        if generation not in billed:
            result.problems.setdefault(generation, "cut mid-stream and not billed")
        elif generation not in logged:
            result.problems.setdefault(generation, "cut mid-stream, billed, not logged")
    for generation, cost in logged.items():
        if billed.get(generation) != cost:
            result.problems.setdefault(
                generation, f"logged at {cost}, billed {billed.get(generation)}"
            )
    for generation, cost in billed.items():
        if cost and generation not in logged:
            result.problems.setdefault(generation, f"billed {cost} and not logged")
    return result


def settle_books(
    platform, organization, *, since: datetime, served, cut, timeout: float = 60.0
) -> Books:
    """Once the platform has recovered: its workers flush what is queued (usage, request
    logs), end expired holds and reconcile; wait until the books agree, or the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        for task in (
            "billing.tasks.release_expired_holds",
            "observability.tasks.flush_request_logs",
            "billing.tasks.flush_usage",
            "billing.tasks.reconcile_usage",
            "observability.tasks.reconcile_request_logs",
        ):
            platform.run_task(task)
        time.sleep(2.0)
        result = books(organization, since=since, served=served, cut=cut)
        if result.lost == 0 or time.monotonic() > deadline:
            return result


RESULTS_DIR = settings.BASE_DIR / "var" / "chaos"
COLUMNS = ("requests", "served", "refused", "rejected", "cut", "failed", "lost", "p99 s")


def record(fault: str, figures: dict, note: str = "") -> None:
    """One fault's figures into var/chaos/results.json, and the table in results.md."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "results.json"
    with (RESULTS_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            rows = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            rows = {}
        rows[fault] = {**figures, "note": note, "at": timezone.now().isoformat(timespec="seconds")}
        path.write_text(json.dumps(rows, indent=2, sort_keys=True))
        lines = [
            "# Chaos suite results",
            "",
            "Each fault under load (`make chaos`). served: complete 2xx answers; refused: 503 in "
            "the OpenAI error shape; rejected: other 4xx; cut: connections broken by a killed "
            "process; failed: any other 5xx, a connection error or a timeout (must be 0); lost: "
            "generations whose billed usage differs from their request log or from the cost "
            "the client was told, once recovered (must be 0).",
            "",
            "| fault | " + " | ".join(COLUMNS) + " | note |",
            "|---" * (len(COLUMNS) + 2) + "|",
        ]
        for name, row in sorted(rows.items()):
            cells = [str(row.get(c, "")) for c in COLUMNS]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {row.get('note', '')} |")
        lines.append("")
        (RESULTS_DIR / "results.md").write_text("\n".join(lines))


def figures(load, result: Books) -> dict:
    counts = load.counts()
    return {
        "requests": sum(counts.values()),
        **counts,
        "lost": result.lost,
        "p99 s": round(load.p99(), 2),
    }

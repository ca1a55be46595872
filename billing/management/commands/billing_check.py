"""Prove the books: every cached balance equals the sum of its organization's ledger entries,
and every served generation (its request log) has its usage entry."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.holds import usd
from billing.selectors import billing_check
from billing.services import usage_reconcile

# Generations listed one by one in the report; the rest are counted.
SHOWN = 20


class Command(BaseCommand):
    help = (
        "Check that every billing account's balance equals the sum of its ledger entries, and "
        "that every served generation in the request logs has its usage entry (--fix bills "
        "those that don't, once)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--hours",
            type=float,
            default=48.0,
            help="How far back to compare request logs with the ledger (default 48).",
        )
        parser.add_argument(
            "--fix",
            action="store_true",
            help="Bill every served generation the ledger lacks, at its logged cost.",
        )

    def handle(self, *args, **options) -> None:
        # Up to BILLING_RECONCILE_SETTLE_SECONDS ago: younger generations may still be on
        # their way to the ledger (outbox, flush), and would only be noise here.
        until = timezone.now() - timedelta(seconds=settings.BILLING_RECONCILE_SETTLE_SECONDS)
        report = usage_reconcile(
            since=until - timedelta(hours=options["hours"]), until=until, fix=options["fix"]
        )
        problems = []
        if report.missing:
            for record in report.missing[:SHOWN]:
                self.stderr.write(
                    f"{record.reference} ({record.organization_id}): served at "
                    f"{record.occurred_at.isoformat()}, {record.cost_nanousd} nano-USD, "
                    "no ledger entry"
                )
            if len(report.missing) > SHOWN:
                self.stderr.write(f"... and {len(report.missing) - SHOWN} more")
            count = len(report.missing)
            summary = (
                f"{count} served generation{'s' if count != 1 else ''} "
                f"({usd(report.missing_nanousd)}) had no ledger entry"
            )
            if options["fix"]:
                self.stdout.write(f"{summary}: billed {report.billed}.")
                if report.failed:
                    problems.append(f"{report.failed} could not be billed; run --fix again.")
            else:
                problems.append(f"{summary}; run with --fix to bill them.")
        # After the fix, so the balances it moved are the ones checked.
        mismatches = billing_check()
        for m in mismatches:
            cached = "no account" if m.cached_nanousd is None else m.cached_nanousd
            self.stderr.write(
                f"{m.organization_id}: cached {cached}, ledger {m.ledger_nanousd} nano-USD"
            )
        if mismatches:
            problems.append(f"{len(mismatches)} balance(s) disagree with the ledger.")
        if problems:
            raise CommandError(" ".join(problems))
        self.stdout.write(
            f"Every balance equals the sum of its ledger entries, and the {report.checked} "
            f"served generations of the last {options['hours']:g} h each have their usage entry."
        )

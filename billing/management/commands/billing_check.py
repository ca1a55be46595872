"""Prove the books: every cached balance equals the sum of its organization's ledger entries."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.selectors import billing_check


class Command(BaseCommand):
    help = "Check that every billing account's balance equals the sum of its ledger entries."

    def handle(self, *args, **options) -> None:
        mismatches = billing_check()
        for m in mismatches:
            cached = "no account" if m.cached_nanousd is None else m.cached_nanousd
            self.stderr.write(
                f"{m.organization_id}: cached {cached}, ledger {m.ledger_nanousd} nano-USD"
            )
        if mismatches:
            raise CommandError(f"{len(mismatches)} balance(s) disagree with the ledger.")
        self.stdout.write("Every balance equals the sum of its ledger entries.")

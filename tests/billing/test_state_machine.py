"""A property-based test of the money path: top-ups, holds, settlements, releases, expiries,
refunds, flushes and replays of all of them, in any order, on the in-process backend.

After every step: the cached balance equals the sum of the ledger's entries, the ledger plus
the usage still queued equals the model's balance, the hold counters mirror the model, and
the balance never goes below zero beyond one request's estimation error.

The bound needs a word. A hold reserves the worst-case cost, so only a request whose real cost
came out above its hold (the estimate was short) can push the balance below zero, and once it
is below zero nothing more is admitted. Here long-running holds settle within their amount and
the requests that overshoot (by at most ESTIMATION_ERROR) settle right after their hold, so the
bound is exactly one request's error. With k overshooting requests in flight at once it would
be the sum of their k errors.

One more thing can take the balance below zero, by design: a request that outlives its hold.
Once a hold has expired (its process looked dead), its reservation is freed for other requests
and refunds; if the request then finishes after all, its real cost is still billed (the
provider charged for it). The bound therefore also allows what such late settlements cost.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings as django_settings
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
)

from billing import selectors
from billing.holds import (
    InProcessHoldStore,
    hold_parts,
    hold_place,
    hold_release,
    hold_settle,
    holds_release_expired,
    org_snapshots,
)
from billing.holds.store import UsageRecord
from billing.models import LedgerEntry
from billing.services import ledger_post, usage_entries_write
from tests.billing.conftest import CENT, USD, call, first_organization

ESTIMATION_ERROR = 3 * CENT
amounts = st.integers(min_value=0, max_value=3 * USD)


class MoneyMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    settled = Bundle("settled")
    credits_posted = Bundle("credits_posted")

    @initialize()
    def open_account(self):
        self.store = InProcessHoldStore(auto_flush=False)
        self.org = first_organization()  # with the $1 free grant
        self.now = timezone.now()
        self.credits = USD
        self.spent = 0
        self.active: dict[str, int] = {}
        self.expired: dict[str, int] = {}
        self.late = 0  # what requests that outlived their holds cost
        self.unflushed = 0
        self.written: list[UsageRecord] = []

    # -- helpers -----------------------------------------------------------------------------

    def _credit(self, kind: str, amount: int) -> tuple[str, str, int]:
        reference = f"{kind}-{uuid.uuid4()}"
        ledger_post(organization=self.org, kind=kind, amount_nanousd=amount, reference=reference)
        org_snapshots.refresh(self.org.id)  # what the post's on_commit does
        self.credits += amount
        return (kind, reference, amount)

    def _place(self, amount: int) -> tuple[str, bool]:
        hold_id = f"gen-{uuid.uuid4().hex}"
        result = call(
            self.store,
            hold_place,
            hold_id=hold_id,
            organization_id=self.org.id,
            key_id=None,
            key_limit_nanousd=None,
            key_period="monthly",
            amount_nanousd=amount,
            now=self.now,
            store=self.store,
        )
        room = self.credits - self.spent - sum(self.active.values())
        assert result.allowed == (room >= amount), (room, amount, result)
        if result.allowed:
            self.active[hold_id] = amount
        return hold_id, result.allowed

    def _settle(self, hold_id: str, actual: int) -> bool:
        first = call(
            self.store,
            hold_settle,
            hold_id=hold_id,
            actual_nanousd=actual,
            organization_id=self.org.id,
            key_id=None,
            store=self.store,
        )
        if first:
            self.active.pop(hold_id, None)
            self.spent += actual
            self.unflushed += actual
        return first

    # -- rules -------------------------------------------------------------------------------

    @rule(target=credits_posted, amount=st.integers(min_value=1, max_value=5 * USD))
    def top_up(self, amount):
        return self._credit(LedgerEntry.Kind.TOPUP, amount)

    @rule(target=credits_posted, fraction=st.floats(min_value=0.0, max_value=1.0))
    def refund(self, fraction):
        # Only unspent, unreserved credit is paid back.
        room = self.credits - self.spent - sum(self.active.values())
        amount = int(room * fraction)
        if amount <= 0:
            return multiple()
        return self._credit(LedgerEntry.Kind.REFUND, -amount)

    @rule(posted=credits_posted)
    def replay_credit(self, posted):
        kind, reference, amount = posted
        _, created = ledger_post(
            organization=self.org, kind=kind, amount_nanousd=amount, reference=reference
        )
        assert not created

    @rule(target=holds, amount=amounts)
    def hold(self, amount):
        hold_id, allowed = self._place(amount)
        return hold_id if allowed else multiple()

    @rule(target=settled, hold_id=consumes(holds), fraction=st.floats(0.0, 1.0))
    def settle(self, hold_id, fraction):
        # A long-running request (or one whose process was only slow, its hold expired): its
        # real cost is within its hold.
        amount = self.active.get(hold_id, self.expired.get(hold_id))
        if hold_id in self.expired:
            self.late += int(amount * fraction)
        assert self._settle(hold_id, int(amount * fraction))
        self.expired.pop(hold_id, None)
        return hold_id

    @rule(target=settled, amount=amounts, error=st.integers(0, ESTIMATION_ERROR))
    def request_with_a_short_estimate(self, amount, error):
        hold_id, allowed = self._place(amount)
        if not allowed:
            return multiple()
        assert self._settle(hold_id, amount + error)
        return hold_id

    @rule(hold_id=consumes(holds))
    def release(self, hold_id):
        released = call(self.store, hold_release, hold_id=hold_id, store=self.store)
        assert released == (hold_id in self.active)
        self.active.pop(hold_id, None)
        self.expired.pop(hold_id, None)

    @rule()
    def crash(self):
        """Every process holding a hold dies: past the deadline the periodic job releases them."""
        later = self.now + timedelta(seconds=django_settings.BILLING_HOLD_TTL_SECONDS + 1)
        assert holds_release_expired(store=self.store, now=later) == len(self.active)
        self.expired.update(self.active)
        self.active.clear()

    @rule(hold_id=settled, actual=amounts)
    def replay_settle(self, hold_id, actual):
        assert not self._settle(hold_id, actual)

    @rule(hold_id=settled)
    def release_after_settle(self, hold_id):
        assert not call(self.store, hold_release, hold_id=hold_id, store=self.store)

    @rule()
    def flush(self):
        batch, records = self.store.usage_take(limit=1000)
        if batch is None:
            return
        assert usage_entries_write(records=records) == []
        self.store.usage_done(batch)
        self.written.extend(records)
        self.unflushed = 0

    @rule()
    def replay_flush(self):
        """A flusher that died after writing: the same records written again change nothing."""
        assert usage_entries_write(records=self.written[-20:]) == []

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def books_agree(self):
        if not hasattr(self, "org"):
            return
        assert selectors.billing_check(organization_ids=[self.org.id]) == []
        ledger = selectors.ledger_sum(organization=self.org)
        assert ledger == self.credits - self.spent + self.unflushed

    @invariant()
    def counters_mirror_the_model(self):
        if not hasattr(self, "org"):
            return
        parts = hold_parts(
            snapshot=org_snapshots.get(self.org.id),
            key_id=None,
            key_limit_nanousd=None,
            key_period="monthly",
            at=self.now,
        )
        [balance] = [part for part in parts if part.scope == "bal"]
        counter = self.store.counter(balance)
        if counter is not None:
            assert counter == (self.spent, sum(self.active.values()))

    @invariant()
    def never_below_zero_beyond_one_estimate(self):
        if not hasattr(self, "org"):
            return
        assert self.credits - self.spent >= -(ESTIMATION_ERROR + self.late)


def test_money_machine(db):
    machine = MoneyMachine.TestCase
    machine.settings = settings(
        max_examples=40,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine().runTest()

"""Billed usage and logged usage agree the other way round too: a generation the ledger
billed and whose request log died with its process (the log buffer is in memory for a moment)
gets a log row from its ledger entry, once; one whose log is only queued is written from the
queue, with its details."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.utils import timezone

from billing.holds.store import UsageRecord
from billing.services import billing_account_for
from billing.services.ledger import usage_entries_write
from observability.models import RequestLog
from observability.tasks import reconcile_request_logs
from observability.writer import get_log_queue
from observability.writer.records import encode
from tests.observability.helpers import make_event


def _billed(organization, *, cost: int, minutes_ago: float) -> str:
    generation = f"gen-{uuid.uuid4().hex}"
    assert not usage_entries_write(
        records=[
            UsageRecord(
                reference=generation,
                organization_id=str(organization.id),
                key_id=None,
                cost_nanousd=cost,
                occurred_at=timezone.now() - timedelta(minutes=minutes_ago),
            )
        ]
    )
    return generation


def test_a_billed_generation_without_a_log_gets_one_from_the_ledger(alice):
    billing_account_for(organization=alice.org)
    lost = _billed(alice.org, cost=7_500, minutes_ago=5)
    young = _billed(alice.org, cost=1_000, minutes_ago=0)  # its log may be on its way
    free = _billed(alice.org, cost=0, minutes_ago=5)  # nothing to agree on
    assert reconcile_request_logs() == 1
    log = RequestLog.objects.get(generation_id=lost)
    assert (log.cost_nanousd, log.status, log.organization_id) == (7_500, "log_lost", alice.org.id)
    assert not RequestLog.objects.filter(generation_id__in=[young, free]).exists()
    assert reconcile_request_logs() == 0  # once


def test_a_queued_log_is_written_with_its_details_not_rebuilt(alice):
    billing_account_for(organization=alice.org)
    event = make_event(
        alice.org,
        cost_nanousd=4_600,
        received_at=time.time() - 300,
        finished_at=time.time() - 299,
    )
    assert not usage_entries_write(
        records=[
            UsageRecord(
                reference=event.generation_id,
                organization_id=str(alice.org.id),
                key_id=event.key_id,
                cost_nanousd=4_600,
                occurred_at=timezone.now() - timedelta(minutes=5),
            )
        ]
    )
    get_log_queue().push([encode(event)])  # a worker was behind
    assert reconcile_request_logs() == 0
    log = RequestLog.objects.get(generation_id=event.generation_id)
    assert (log.status, log.model, log.cost_nanousd) == ("ok", event.model, 4_600)

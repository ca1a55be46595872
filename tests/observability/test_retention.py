"""Retention: old request logs and their attempts go in batches; recent ones and every rollup
stay."""

from __future__ import annotations

import io
import time

from django.core.management import call_command

from observability.models import RequestAttempt, RequestLog, UsageRollup
from observability.services import request_logs_purge
from tests.factories import OrganizationFactory
from tests.observability.factories import request_log_for

DAY = 86_400


def _log(org, age_days: float) -> RequestLog:
    at = time.time() - age_days * DAY
    return request_log_for(org, received_at=at - 0.5, finished_at=at)


def test_purge_removes_only_logs_past_the_retention_period(db, settings):
    settings.LOG_RETENTION_DAYS = 30
    first, second = OrganizationFactory(), OrganizationFactory()
    old = [_log(first, 45), _log(second, 31), _log(first, 30.1)]
    kept = [_log(first, 29.9), _log(second, 1), _log(first, 0)]
    rollups = UsageRollup.objects.count()
    assert RequestAttempt.objects.filter(log__in=old).count() == 3

    assert request_logs_purge(batch_size=2) == 3  # two batches
    assert set(RequestLog.objects.values_list("id", flat=True)) == {log.id for log in kept}
    assert RequestAttempt.objects.filter(log_id__in=[log.id for log in old]).count() == 0
    assert RequestAttempt.objects.count() == 3
    assert UsageRollup.objects.count() == rollups  # the 30-day figures keep their history
    assert request_logs_purge() == 0


def test_the_command_purges_with_its_own_period(db):
    org = OrganizationFactory()
    _log(org, 10)
    recent = _log(org, 2)
    out = io.StringIO()
    call_command("purge_request_logs", "--days", "7", stdout=out)
    assert out.getvalue().strip() == "purged 1 request logs"
    assert list(RequestLog.objects.values_list("id", flat=True)) == [recent.id]

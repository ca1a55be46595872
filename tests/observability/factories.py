"""Request logs for tests of other parts (the tenant isolation test needs a generation id)."""

from __future__ import annotations

from observability.models import RequestLog
from observability.services import request_logs_write
from observability.writer.records import event_to_record
from tests.observability.helpers import make_event


def request_log_for(organization, **overrides) -> RequestLog:
    """One written generation of the organization (log row, attempt, rollup)."""
    event = make_event(organization, **overrides)
    request_logs_write(records=[event_to_record(event)])
    return RequestLog.objects.get(generation_id=event.generation_id)

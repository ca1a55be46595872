"""The batch writer: records -> log rows, attempts and rollups in one transaction; redelivery
is harmless; the durable queue keeps what a failed batch didn't write."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import transaction

from accounts import services as account_services
from observability.models import (
    OrganizationLogSettings,
    RequestAttempt,
    RequestLog,
    UsageRollup,
)
from observability.selectors import overview_figures
from observability.services import log_settings_update, request_logs_flush, request_logs_write
from observability.writer import flush_now, get_log_queue, log_buffer
from observability.writer.records import encode, event_to_record
from tests.factories import OrganizationFactory
from tests.observability.helpers import attempt, make_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _writer_driven_by_the_test(settings):
    """These tests call the writer themselves: the background thread waits, and whatever
    earlier tests left buffered is written (or skipped) first."""
    settings.OBSERVABILITY_LIVE_UPDATES = False
    with log_buffer.paused():
        flush_now()
        yield


def records(*events):
    return [event_to_record(event) for event in events]


def test_a_record_becomes_a_log_row_with_its_attempts_and_timings(alice):
    received = datetime(2026, 1, 5, 10, 30, tzinfo=UTC).timestamp()
    event = make_event(
        alice.org,
        received_at=received,
        finished_at=received + 1.5,
        streamed=True,
        attempts=(
            attempt("google-ai-studio", "overloaded", 500, 100.0, started_at=received + 0.002),
            attempt("vertex-ai", "ok", None, 1300.0, started_at=received + 0.150, ttft_ms=250.0),
        ),
    )
    [log] = request_logs_write(records=records(event))
    log = RequestLog.objects.get(generation_id=event.generation_id)
    assert log.organization_id == alice.org.id
    assert str(log.key_id) == event.key_id
    assert (log.model, log.provider, log.status, log.streamed) == (
        "google/gemini-3.1-flash-lite",
        "google-ai-studio",
        "ok",
        True,
    )
    assert (log.prompt_tokens, log.completion_tokens, log.cached_tokens) == (12, 30, 2)
    assert log.cost_nanousd == 4_600
    assert log.total_ms == pytest.approx(1500, abs=0.01)
    assert log.gateway_ms == pytest.approx(2, abs=0.01)
    assert log.ttft_ms == 250.0
    # 30 tokens from the first token (0.150 + 0.250 s) to the end (1.5 s): 1.1 s.
    assert log.tokens_per_second == pytest.approx(30 / 1.1, rel=1e-3)
    attempts = list(RequestAttempt.objects.filter(log=log).order_by("index"))
    assert [(a.provider, a.outcome, a.http_status) for a in attempts] == [
        ("google-ai-studio", "overloaded", 500),
        ("vertex-ai", "ok", None),
    ]
    assert attempts[1].offset_ms == pytest.approx(150, abs=0.01)
    assert log.attempt_count == 2


def test_rollups_add_up_per_hour_and_count_rate_limits_apart(alice):
    hour = datetime(2026, 1, 5, 10, tzinfo=UTC).timestamp()
    key = str(alice.org.id)  # any stable uuid
    events = [
        make_event(alice.org, key_id=key, received_at=hour + 60, finished_at=hour + 60.2),
        make_event(alice.org, key_id=key, received_at=hour + 120, finished_at=hour + 123),
        make_event(
            alice.org, key_id=key, received_at=hour + 180, finished_at=hour + 180.1, error="timeout"
        ),
        make_event(
            alice.org,
            key_id=key,
            received_at=hour + 240,
            finished_at=hour + 240.1,
            error="upstream_rate_limited",
        ),
        make_event(alice.org, key_id=key, received_at=hour + 3700, finished_at=hour + 3700.1),
    ]
    request_logs_write(records=records(*events[:3]))
    request_logs_write(records=records(*events[3:]))
    rows = list(UsageRollup.objects.filter(organization=alice.org).order_by("hour"))
    assert [r.requests for r in rows] == [4, 1]
    first = rows[0]
    assert (first.errors, first.rate_limited) == (1, 1)
    assert first.prompt_tokens == 4 * 12 and first.completion_tokens == 4 * 30
    assert first.cost_nanousd == 4 * 4_600
    assert (first.lat_le_250ms, first.lat_le_5s) == (3, 1)
    assert first.latency_ms_sum == pytest.approx(200 + 3000 + 100 + 100, abs=0.1)


def test_overview_figures_come_from_the_rollups(alice):
    events = [make_event(alice.org) for _ in range(3)] + [
        make_event(alice.org, error="overloaded"),
        make_event(alice.org, error="rate_limited"),
    ]
    request_logs_write(records=records(*events))
    figures = overview_figures(organization_id=alice.org.id)
    assert figures["requests"] == 5
    assert figures["prompt_tokens"] == 60 and figures["completion_tokens"] == 150
    # 3 successes, 1 error, the rate limit left out of uptime.
    assert figures["uptime"] == 75.0
    assert figures["error_rate"] == 40.0
    assert figures["cost_usd"] == "0.000023"
    # The logs themselves are not what is read: deleting them leaves the figures.
    RequestLog.objects.all().delete()
    assert overview_figures(organization_id=alice.org.id)["requests"] == 5


def test_a_redelivered_batch_changes_nothing(alice):
    batch = records(make_event(alice.org), make_event(alice.org))
    assert len(request_logs_write(records=batch)) == 2
    assert request_logs_write(records=batch) == []
    # A batch repeating one record inside itself counts it once too.
    again = records(make_event(alice.org))
    assert len(request_logs_write(records=again + again)) == 1
    assert RequestLog.objects.filter(organization=alice.org).count() == 3
    assert RequestAttempt.objects.filter(log__organization=alice.org).count() == 3
    assert overview_figures(organization_id=alice.org.id)["requests"] == 3


def test_records_of_unknown_organizations_or_unreadable_are_skipped(alice):
    doomed = OrganizationFactory()  # no money ever moved there, so it can be deleted
    gone = make_event(doomed)
    doomed.delete()
    bad = {"generation_id": "not-an-id", "organization_id": str(alice.org.id)}
    written = request_logs_write(records=[*records(gone, make_event(alice.org)), bad])
    assert [log.organization_id for log in written] == [alice.org.id]


def test_the_sink_buffers_without_io_and_flush_now_writes(alice, django_assert_num_queries):
    event = make_event(alice.org)
    with django_assert_num_queries(0):
        log_buffer.sink(event)
    assert len(log_buffer) >= 1
    flush_now()
    assert len(log_buffer) == 0
    assert RequestLog.objects.filter(generation_id=event.generation_id).exists()
    assert get_log_queue().pending() == 0


def test_a_failed_batch_stays_queued_and_is_written_later(alice, monkeypatch):
    events = [make_event(alice.org) for _ in range(3)]
    for event in events:
        log_buffer.sink(event)
    log_buffer.push()

    from observability import services

    def broken(*, records):
        with transaction.atomic():
            RequestLog.objects.bulk_create([])  # the transaction starts, then the worker dies
            raise RuntimeError("worker killed")

    monkeypatch.setattr(services, "request_logs_write", broken)
    with pytest.raises(RuntimeError):
        request_logs_flush()
    monkeypatch.undo()
    assert not RequestLog.objects.filter(organization=alice.org).exists()
    assert request_logs_flush() == 3
    assert RequestLog.objects.filter(organization=alice.org).count() == 3
    assert overview_figures(organization_id=alice.org.id)["requests"] == 3


def test_the_database_queue_keeps_batches_until_written(alice):
    """The durable queue, with or without Redis."""
    from observability.services import request_logs_write as write
    from observability.writer.queue import DatabaseLogQueue

    queue = DatabaseLogQueue()
    queue.push([encode(make_event(alice.org)), encode(make_event(alice.org))])
    assert queue.pending() == 1  # one row per pushed batch

    def broken(records):
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        queue.process(broken, limit=100)
    assert queue.pending() == 1  # still there for the next writer
    assert queue.process(lambda records: write(records=records), limit=100) == 2
    assert queue.pending() == 0
    assert RequestLog.objects.filter(organization=alice.org).count() == 2
    assert get_log_queue().name == "database"


def test_bodies_are_kept_only_for_organizations_that_opted_in(alice, charlie):
    log_settings_update(organization=alice.org, store_bodies=True, max_body_bytes=1024)
    mine, theirs = make_event(alice.org), make_event(charlie.org)
    batch = []
    long_prompt = '{"messages": [{"role": "user", "content": "' + "hello " * 400 + '"}]}'
    for event in (mine, theirs):
        record = event_to_record(event)
        record["prompt_body"] = long_prompt
        record["response_body"] = "short"
        batch.append(record)
    request_logs_write(records=batch)
    kept = RequestLog.objects.get(generation_id=mine.generation_id)
    assert kept.prompt_body == long_prompt[:1024]  # capped at 1024 bytes
    assert kept.response_body == "short"
    other = RequestLog.objects.get(generation_id=theirs.generation_id)
    assert other.prompt_body is None and other.response_body is None
    assert OrganizationLogSettings.objects.get(organization=alice.org).store_bodies


def test_bodies_are_off_by_default(alice):
    assert not OrganizationLogSettings.objects.filter(organization=alice.org).exists()
    key, _ = account_services.api_key_create(
        organization=alice.org, created_by=alice.user, name="k"
    )
    record = event_to_record(make_event(alice.org, key_id=str(key.id)))
    record["prompt_body"] = "secret prompt"
    request_logs_write(records=[record])
    assert RequestLog.objects.get().prompt_body is None


def test_shutdown_pushes_and_writes_what_is_still_buffered(alice, settings):
    settings.OBSERVABILITY_WRITE_IN_PROCESS = True
    event = make_event(alice.org)
    log_buffer.sink(event)
    log_buffer.shutdown()
    assert len(log_buffer) == 0
    assert RequestLog.objects.filter(generation_id=event.generation_id).exists()


def test_the_periodic_task_leaves_fresh_entries_to_the_web_process(alice, settings):
    """Embedded default: the web process writes its own (its channel layer is in-process);
    the Celery task only picks up what a dead process left behind."""
    from observability.tasks import flush_request_logs

    settings.OBSERVABILITY_WRITE_IN_PROCESS = True
    settings.REDIS_URL = ""  # the database queue
    event = make_event(alice.org)
    log_buffer.sink(event)
    log_buffer.push()
    assert flush_request_logs() == 0
    settings.OBSERVABILITY_QUEUE_STALE_SECONDS = 0
    assert flush_request_logs() == 1
    assert RequestLog.objects.filter(generation_id=event.generation_id).exists()

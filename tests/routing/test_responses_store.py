"""Stored responses past their retention are purged by the periodic task; newer ones stay."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.utils import timezone

from routing import services
from routing.models import StoredResponse
from routing.tasks import purge_stored_responses


def _row(org, response_id: str) -> dict:
    return {
        "response_id": response_id,
        "organization_id": org.id,
        "key_id": uuid.uuid4(),
        "response": json.dumps({"id": response_id}),
        "conversation": [{"role": "user", "content": "hi"}],
        "input_items": [],
    }


def test_responses_past_retention_are_purged(alice, settings):
    settings.RESPONSES_RETENTION_DAYS = 30
    settings.RESPONSES_PURGE_BATCH = 2
    assert (
        services.stored_responses_create(
            rows=[_row(alice.org, f"resp_old{n}") for n in range(5)] + [_row(alice.org, "resp_new")]
        )
        == 6
    )
    StoredResponse.objects.exclude(id="resp_new").update(
        created_at=timezone.now() - timedelta(days=31)
    )
    assert purge_stored_responses() == 5
    assert list(StoredResponse.objects.values_list("id", flat=True)) == ["resp_new"]
    assert purge_stored_responses() == 0


def test_one_bad_row_does_not_lose_the_batch(alice):
    rows = [_row(alice.org, "resp_a"), _row(alice.org, "resp_a"), _row(alice.org, "resp_b")]
    assert services.stored_responses_create(rows=rows) == 2
    assert set(StoredResponse.objects.values_list("id", flat=True)) == {"resp_a", "resp_b"}

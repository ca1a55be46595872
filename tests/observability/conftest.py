"""Each observability test writes through a queue of its own (a Redis stream named for the
test when REDIS_URL is set). Helpers are in helpers.py."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings as django_settings


@pytest.fixture(autouse=True)
def own_log_queue(settings):
    """Each test writes through a stream of its own (never FLUSHDB: other tests share Redis)."""
    settings.OBSERVABILITY_STREAM = f"test:obs:{uuid.uuid4().hex}"
    yield settings.OBSERVABILITY_STREAM
    if django_settings.REDIS_URL:
        from observability.writer.queue import forget_log_queue

        queue = forget_log_queue(django_settings.REDIS_URL, settings.OBSERVABILITY_STREAM)
        if queue is not None:
            queue.client.delete(queue.stream)
            queue.close()

"""The buffered, durable request-log writer (see buffer.py for the request path's side,
queue.py for the durable queue, services.logs for the batch writer)."""

from __future__ import annotations

from observability.writer.buffer import LogBuffer, log_buffer
from observability.writer.queue import get_log_queue

__all__ = ["LogBuffer", "flush_now", "get_log_queue", "log_buffer"]


def flush_now() -> int:
    """Synchronously: push this process's buffer to the queue, then write the whole queue.
    For tests and management commands; returns how many records were written or skipped."""
    from observability.services import request_logs_flush

    log_buffer.push()
    return request_logs_flush()

"""The gateway's Celery tasks (found by autodiscovery): batch runs and their sweep."""

from __future__ import annotations

from routing.batches.tasks import batch_run, batch_sweep

__all__ = ["batch_run", "batch_sweep"]

"""A candidate change, for `bench/run.py --gateway-app fixdb_asgi:application
--pythonpath bench/candidates` (not imported by the app).

The /v1 handler sends no request signals, so a database call made through `sync_to_async` from
the API path keeps its pooled connection in a worker thread that then goes away: the psycopg pool
loses a slot per call, and after `max_size` (10) of them every DB call waits 30 s (PoolTimeout,
then a 500). This gives the connection back to the pool after the two calls the benchmark path
makes (the key lookup and `config.db.run_db`); the real fix belongs in the app (e.g. channels'
`database_sync_to_async`, which closes old connections in the worker thread after the call).
"""

# ruff: noqa: I001 - Django must be set up (config.asgi) before the app's modules are imported
from __future__ import annotations

from config.asgi import application  # noqa: F401 - what uvicorn serves

from django.db import connections

import accounts.api_key_auth as auth
import config.db as db

_lookup = auth._lookup
_fresh = db._fresh


def _release() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close()  # with the psycopg pool: back to the pool


def _lookup_and_release(hashed):
    try:
        return _lookup(hashed)
    finally:
        _release()


def _fresh_and_release(fn):
    try:
        return _fresh(fn)
    finally:
        _release()


auth._lookup = _lookup_and_release
db._fresh = _fresh_and_release

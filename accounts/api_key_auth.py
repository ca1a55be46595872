"""Turning a bearer token into a key and its organization, fast.

Order of checks: shape and checksum (no I/O), this process's memory (~1 s), the shared cache
(Redis in production), then the database. Revoking or changing a key overwrites its shared
cache entry, so every process sees the change once its local copy (at most
API_KEY_LOCAL_TTL old) lapses. Fills use `add`, never `set`, so a lookup that raced a revoke
cannot put the stale, still-active record back.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import BaseCache
from django.db import DatabaseError, close_old_connections
from django.db.models import Q
from django.utils import timezone

from accounts import keyformat
from accounts.models import APIKey
from config.db import run_db
from config.localcache import LocalTTLCache
from config.localcache import process_cache as cache

logger = logging.getLogger(__name__)

_NOT_FOUND = "absent"
_MISS = object()


class KeyRejected(Exception):
    """The token does not open the gateway. `reason` is safe to show the caller."""

    def __init__(self, reason: str, *, code: str = "invalid_api_key") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class AuthenticatedKey:
    key_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    expires_at: datetime | None
    revoked: bool
    spend_limit_nanousd: int | None
    spend_limit_period: str
    rpm_limit: int | None
    tpm_limit: int | None
    allowed_models: tuple[str, ...]
    org_rpm_limit: int | None = None
    org_tpm_limit: int | None = None
    # Browser origins allowed to use the key (CORS): its own list, else its organization's.
    allowed_origins: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: dict) -> AuthenticatedKey:
        return cls(
            key_id=row["id"],
            organization_id=row["organization_id"],
            name=row["name"],
            expires_at=row["expires_at"],
            revoked=row["revoked_at"] is not None,
            spend_limit_nanousd=row["spend_limit_nanousd"],
            spend_limit_period=row["spend_limit_period"],
            rpm_limit=row["rpm_limit"],
            tpm_limit=row["tpm_limit"],
            allowed_models=tuple(row["allowed_models"] or ()),
            org_rpm_limit=row["organization__rpm_limit"],
            org_tpm_limit=row["organization__tpm_limit"],
            allowed_origins=tuple(
                row.get("allowed_origins") or row.get("organization__allowed_origins") or ()
            ),
        )

    @classmethod
    def from_instance(cls, key: APIKey) -> AuthenticatedKey:
        row = {f: getattr(key, f) for f in _FIELDS if "__" not in f}
        row["organization__rpm_limit"] = key.organization.rpm_limit
        row["organization__tpm_limit"] = key.organization.tpm_limit
        row["organization__allowed_origins"] = key.organization.allowed_origins
        return cls.from_row(row)

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    def allows_origin(self, origin: str) -> bool:
        return "*" in self.allowed_origins or origin in self.allowed_origins


_FIELDS = (
    "id",
    "organization_id",
    "name",
    "expires_at",
    "revoked_at",
    "spend_limit_nanousd",
    "spend_limit_period",
    "rpm_limit",
    "tpm_limit",
    "allowed_models",
    "organization__rpm_limit",
    "organization__tpm_limit",
    "allowed_origins",
    "organization__allowed_origins",
)


class KeyCache:
    """Two levels: a per-process dict with a ~1 s life over the shared Django cache.

    One instance lives in each process (`key_cache` below); tests make a second one to play a
    second server process sharing the same cache.
    """

    def __init__(
        self,
        shared: BaseCache | None = None,
        *,
        local_ttl: float | None = None,
        shared_ttl: int | None = None,
    ) -> None:
        self._shared = shared
        self._local = LocalTTLCache()
        self._local_ttl = local_ttl
        self._shared_ttl = shared_ttl

    @property
    def shared(self) -> BaseCache:
        return self._shared if self._shared is not None else cache

    @property
    def local_ttl(self) -> float:
        return self._local_ttl if self._local_ttl is not None else settings.API_KEY_LOCAL_TTL

    @property
    def shared_ttl(self) -> int:
        return self._shared_ttl if self._shared_ttl is not None else settings.API_KEY_CACHE_TTL

    @staticmethod
    def cache_key(hashed: str) -> str:
        return f"apikey:{hashed}"

    def _local_get(self, hashed: str) -> object:
        return self._local.get(hashed, _MISS)

    def _local_put(self, hashed: str, value: object) -> None:
        self._local.put(hashed, value, self.local_ttl)

    def get(self, hashed: str) -> object:
        value = self._local_get(hashed)
        if value is _MISS:
            value = self.shared.get(self.cache_key(hashed), _MISS)
            if value is not _MISS:
                self._local_put(hashed, value)
        return value

    async def aget(self, hashed: str) -> object:
        value = self._local_get(hashed)
        if value is _MISS:
            value = await self.shared.aget(self.cache_key(hashed), _MISS)
            if value is not _MISS:
                self._local_put(hashed, value)
        return value

    def fill(self, hashed: str, value: object) -> None:
        self.shared.add(self.cache_key(hashed), value, self.shared_ttl)
        self._local_put(hashed, value)

    async def afill(self, hashed: str, value: object) -> None:
        await self.shared.aadd(self.cache_key(hashed), value, self.shared_ttl)
        self._local_put(hashed, value)

    def replace(self, hashed: str, value: AuthenticatedKey) -> None:
        """After a revoke or an edit: overwrite what every process will read next."""
        self.shared.set(self.cache_key(hashed), value, self.shared_ttl)
        self._local.pop(hashed)

    def stale(self, hashed: str) -> object:
        """Called while handling a DatabaseError: neither the shared cache nor the database
        answers, so the last record this process saw for the key (a warm key) keeps it
        serving; any other key re-raises (the API answers 503, not 401)."""
        value = self._local.stale(hashed)
        if not isinstance(value, AuthenticatedKey):
            raise  # noqa: PLE0704
        return value

    def clear_local(self) -> None:
        self._local.clear()


class LastUsedRecorder:
    """Collects "key X was used at T" in memory and writes them in one batch now and then,
    so a busy key costs no database write per request."""

    def __init__(self, *, flush_every: float | None = None) -> None:
        self._pending: dict[uuid.UUID, datetime] = {}
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._flush_every = flush_every
        self._flushing = False

    @property
    def flush_every(self) -> float:
        if self._flush_every is not None:
            return self._flush_every
        return settings.API_KEY_LAST_USED_FLUSH_SECONDS

    def touch(self, key_id: uuid.UUID, when: datetime | None = None) -> None:
        when = when or timezone.now()
        start_flush = False
        with self._lock:
            # Requests can finish out of order: keep the newest time, not the last reported.
            pending = self._pending.get(key_id)
            if pending is None or when > pending:
                self._pending[key_id] = when
            if not self._flushing and time.monotonic() - self._last_flush >= self.flush_every:
                self._flushing = start_flush = True
        if start_flush:
            threading.Thread(target=self._flush_in_thread, daemon=True).start()

    def _flush_in_thread(self) -> None:
        try:
            self.flush()
        except Exception:  # a lost last_used_at is not worth crashing for
            logger.exception("last_used_at flush failed")
        finally:
            close_old_connections()

    def discard(self) -> None:
        with self._lock:
            self._pending.clear()

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
            self._flushing = False
        for key_id, when in pending.items():
            APIKey.objects.filter(id=key_id).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=when)
            ).update(last_used_at=when)
        return len(pending)


key_cache = KeyCache()
last_used = LastUsedRecorder()


def _lookup(hashed: str) -> dict | None:
    return APIKey.objects.filter(hashed_key=hashed).values(*_FIELDS).first()


def _check(record: object) -> AuthenticatedKey:
    if record is _MISS or record == _NOT_FOUND or not isinstance(record, AuthenticatedKey):
        raise KeyRejected("Incorrect API key provided.")
    if record.revoked:
        raise KeyRejected("This API key has been revoked.", code="revoked_api_key")
    if record.expires_at is not None and record.expires_at <= timezone.now():
        raise KeyRejected("This API key has expired.", code="expired_api_key")
    return record


def _well_formed_hash(raw_key: str) -> str:
    if not raw_key or not keyformat.is_well_formed(raw_key):
        raise KeyRejected("Incorrect API key provided.")
    return keyformat.hash_key(raw_key)


def authenticate(raw_key: str, *, cache_: KeyCache | None = None) -> AuthenticatedKey:
    kc = cache_ or key_cache
    hashed = _well_formed_hash(raw_key)
    record = kc.get(hashed)
    if record is _MISS:
        try:
            row = APIKey.objects.filter(hashed_key=hashed).values(*_FIELDS).first()
        except DatabaseError:
            record = kc.stale(hashed)
        else:
            record = AuthenticatedKey.from_row(row) if row else _NOT_FOUND
            kc.fill(hashed, record)
    key = _check(record)
    last_used.touch(key.key_id)
    return key


async def aauthenticate(raw_key: str, *, cache_: KeyCache | None = None) -> AuthenticatedKey:
    kc = cache_ or key_cache
    hashed = _well_formed_hash(raw_key)
    record = await kc.aget(hashed)
    if record is _MISS:
        try:
            # run_db: the connection housekeeping the lean API handler's missing request
            # signals would do, and no wait while the database is known to be unreachable.
            row = await run_db(lambda: _lookup(hashed))
        except DatabaseError:
            record = kc.stale(hashed)
        else:
            record = AuthenticatedKey.from_row(row) if row else _NOT_FOUND
            await kc.afill(hashed, record)
    key = _check(record)
    last_used.touch(key.key_id)
    return key


def _flush_at_exit() -> None:
    try:
        last_used.flush()
    except Exception:  # the database may already be gone at shutdown
        logger.warning("could not write last_used_at at exit", exc_info=True)


atexit.register(_flush_at_exit)

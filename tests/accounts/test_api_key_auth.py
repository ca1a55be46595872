"""The gateway's door: bearer token in, key and organization out, and what it costs."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import keyformat, selectors, services
from accounts.api_key_auth import (
    AuthenticatedKey,
    KeyCache,
    KeyRejected,
    LastUsedRecorder,
    authenticate,
    key_cache,
    last_used,
)
from accounts.models import APIKey

pytestmark = pytest.mark.django_db

MALFORMED = [
    "",
    "Bearer",
    "sk-1234567890",
    "llmapi_short",
    "llmapi_" + "0" * 37,
    "llmapi_" + "!" * 36,
]


def _unknown_but_well_formed() -> str:
    return keyformat.generate()


def _bad_checksum(raw: str) -> str:
    last = raw[-1]
    return raw[:-1] + ("A" if last != "A" else "B")


@pytest.fixture
def make_key(alice):
    def _make(**kwargs) -> tuple[APIKey, str]:
        kwargs.setdefault("name", "test key")
        return services.api_key_create(organization=alice.org, created_by=alice.user, **kwargs)

    return _make


@pytest.fixture
def revoke(alice, django_capture_on_commit_callbacks):
    def _revoke(key: APIKey) -> None:
        with django_capture_on_commit_callbacks(execute=True):
            services.api_key_revoke(api_key=key, actor=alice.user)

    return _revoke


def _cold() -> None:
    cache.clear()
    key_cache.clear_local()


# --- sync ---------------------------------------------------------------------------------


def test_a_valid_key_opens_the_door_for_its_organization(alice, make_key):
    key, raw = make_key(name="prod", rpm_limit=60, allowed_models=["google/gemini-3.1-flash-lite"])
    authed = selectors.api_key_authenticate(raw_key=raw)
    assert isinstance(authed, AuthenticatedKey)
    assert authed.key_id == key.id
    assert authed.organization_id == alice.org.id
    assert authed.name == "prod"
    assert authed.rpm_limit == 60
    assert authed.allows_model("google/gemini-3.1-flash-lite")
    assert not authed.allows_model("openai/gpt-4.1-mini")


def test_keys_of_two_tenants_lead_to_their_own_organizations(alice, charlie, make_key):
    _, alice_raw = make_key()
    _, charlie_raw = services.api_key_create(
        organization=charlie.org, created_by=charlie.user, name="globex"
    )
    assert selectors.api_key_authenticate(raw_key=alice_raw).organization_id == alice.org.id
    assert selectors.api_key_authenticate(raw_key=charlie_raw).organization_id == charlie.org.id


@pytest.mark.parametrize("token", MALFORMED)
def test_a_malformed_token_is_refused_without_a_query(token, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(KeyRejected) as refused:
        selectors.api_key_authenticate(raw_key=token)
    assert refused.value.reason == "Incorrect API key provided."
    assert refused.value.code == "invalid_api_key"


def test_a_bad_checksum_is_refused_without_a_query(make_key, django_assert_num_queries):
    _, raw = make_key()
    with django_assert_num_queries(0), pytest.raises(KeyRejected) as refused:
        selectors.api_key_authenticate(raw_key=_bad_checksum(raw))
    assert refused.value.code == "invalid_api_key"


def test_an_unknown_well_formed_key_is_refused_and_the_refusal_is_cached(
    alice, django_assert_num_queries
):
    raw = _unknown_but_well_formed()
    with django_assert_num_queries(1), pytest.raises(KeyRejected) as refused:
        selectors.api_key_authenticate(raw_key=raw)
    assert refused.value.reason == "Incorrect API key provided."
    # Hammering the door with the same made-up key doesn't reach the database again.
    key_cache.clear_local()
    with django_assert_num_queries(0), pytest.raises(KeyRejected):
        selectors.api_key_authenticate(raw_key=raw)


def test_a_warm_key_costs_no_query(make_key, django_assert_num_queries):
    key, raw = make_key()
    with django_assert_num_queries(1):
        selectors.api_key_authenticate(raw_key=raw)
    with django_assert_num_queries(0):
        for _ in range(10):
            assert selectors.api_key_authenticate(raw_key=raw).key_id == key.id
    # Past this process's memory, the shared cache still answers.
    key_cache.clear_local()
    with django_assert_num_queries(0):
        assert selectors.api_key_authenticate(raw_key=raw).key_id == key.id


def test_a_key_hashed_under_another_pepper_is_refused(make_key, settings):
    _, raw = make_key()
    settings.API_KEY_PEPPER = "a-rotated-pepper"
    with pytest.raises(KeyRejected):
        selectors.api_key_authenticate(raw_key=raw)


def test_a_revoked_key_is_refused_at_once_in_the_revoking_process(make_key, revoke):
    key, raw = make_key()
    selectors.api_key_authenticate(raw_key=raw)
    revoke(key)
    with pytest.raises(KeyRejected) as refused:
        selectors.api_key_authenticate(raw_key=raw)
    assert refused.value.reason == "This API key has been revoked."
    assert refused.value.code == "revoked_api_key"
    # And from the database too, once every cache has forgotten it.
    _cold()
    with pytest.raises(KeyRejected) as refused:
        selectors.api_key_authenticate(raw_key=raw)
    assert refused.value.code == "revoked_api_key"


# --- two server processes sharing one cache ----------------------------------------------


def test_a_revoke_reaches_another_process_immediately_with_no_local_ttl(
    make_key, revoke, django_assert_num_queries
):
    key, raw = make_key()
    process_a, process_b = KeyCache(local_ttl=0), KeyCache(local_ttl=0)
    assert authenticate(raw, cache_=process_a).key_id == key.id
    assert authenticate(raw, cache_=process_b).key_id == key.id

    revoke(key)

    for process in (process_a, process_b):
        with django_assert_num_queries(0), pytest.raises(KeyRejected) as refused:
            authenticate(raw, cache_=process)
        assert refused.value.code == "revoked_api_key"


def test_a_revoke_reaches_another_process_within_a_second(make_key, revoke):
    key, raw = make_key()
    process_a, process_b = KeyCache(local_ttl=1.0), KeyCache(local_ttl=1.0)
    assert authenticate(raw, cache_=process_a).key_id == key.id
    assert authenticate(raw, cache_=process_b).key_id == key.id

    revoke(key)
    # Each process may serve its local copy for up to local_ttl...
    assert authenticate(raw, cache_=process_b).key_id == key.id

    time.sleep(1.05)
    # ...and not a moment longer.
    for process in (process_a, process_b):
        with pytest.raises(KeyRejected) as refused:
            authenticate(raw, cache_=process)
        assert refused.value.code == "revoked_api_key"


def test_a_stale_fill_after_a_revoke_does_not_resurrect_the_key(make_key, revoke):
    key, raw = make_key()
    hashed = keyformat.hash_key(raw)
    # A lookup in another process read the row while the key was still active...
    stale = AuthenticatedKey.from_instance(APIKey.objects.get(pk=key.pk))
    assert not stale.revoked
    revoke(key)
    # ...and writes it to the cache only after the revoke has been published.
    slow_process = KeyCache(local_ttl=0)
    slow_process.fill(hashed, stale)

    for process in (slow_process, KeyCache(local_ttl=0)):
        with pytest.raises(KeyRejected) as refused:
            authenticate(raw, cache_=process)
        assert refused.value.code == "revoked_api_key"


def test_an_edit_reaches_another_process(alice, make_key, django_capture_on_commit_callbacks):
    key, raw = make_key(rpm_limit=10)
    other_process = KeyCache(local_ttl=0)
    assert authenticate(raw, cache_=other_process).rpm_limit == 10
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(api_key=key, actor=alice.user, rpm_limit=500)
    assert authenticate(raw, cache_=other_process).rpm_limit == 500


# --- expiry -------------------------------------------------------------------------------


def test_a_key_past_its_expiry_is_refused(make_key):
    key, raw = make_key()
    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(KeyRejected) as refused:
        selectors.api_key_authenticate(raw_key=raw)
    assert refused.value.reason == "This API key has expired."
    assert refused.value.code == "expired_api_key"


def test_a_key_works_until_its_expiry(make_key):
    key, raw = make_key(expires_at=timezone.now() + timedelta(hours=1))
    assert selectors.api_key_authenticate(raw_key=raw).key_id == key.id

    APIKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    _cold()
    with pytest.raises(KeyRejected) as refused:
        selectors.api_key_authenticate(raw_key=raw)
    assert refused.value.code == "expired_api_key"


def test_a_cached_key_expires_on_time_without_a_query(make_key, django_assert_num_queries):
    key, raw = make_key(expires_at=timezone.now() + timedelta(seconds=0.3))
    assert selectors.api_key_authenticate(raw_key=raw).key_id == key.id
    time.sleep(0.35)
    with django_assert_num_queries(0), pytest.raises(KeyRejected) as refused:
        selectors.api_key_authenticate(raw_key=raw)
    assert refused.value.code == "expired_api_key"


# --- last_used_at -------------------------------------------------------------------------


def test_requests_write_nothing_and_one_flush_writes_last_used_at(make_key):
    last_used.flush()  # whatever earlier tests left behind
    key, raw = make_key()
    before = timezone.now()

    with CaptureQueriesContext(connection) as queries:
        for _ in range(50):
            selectors.api_key_authenticate(raw_key=raw)
    assert len(queries) == 1  # the cold lookup, and nothing per request
    assert not any("UPDATE" in q["sql"].upper() for q in queries.captured_queries)
    key.refresh_from_db()
    assert key.last_used_at is None

    with CaptureQueriesContext(connection) as queries:
        assert last_used.flush() == 1
    assert len(queries) == 1
    assert queries.captured_queries[0]["sql"].upper().startswith("UPDATE")
    key.refresh_from_db()
    assert before <= key.last_used_at <= timezone.now()


def test_an_older_timestamp_never_overwrites_a_newer_one(make_key):
    key, _ = make_key()
    recorder = LastUsedRecorder(flush_every=10**9)
    newer = timezone.now()
    older = newer - timedelta(minutes=5)

    recorder.touch(key.id, newer)
    recorder.flush()
    recorder.touch(key.id, older)
    recorder.flush()
    key.refresh_from_db()
    assert key.last_used_at == newer

    # Nor within one batch, when requests finish out of order.
    newest = newer + timedelta(minutes=1)
    recorder.touch(key.id, newest)
    recorder.touch(key.id, newer)
    recorder.flush()
    key.refresh_from_db()
    assert key.last_used_at == newest


# --- async --------------------------------------------------------------------------------


class _WorkerQueries:
    """Counts the queries of the thread where Django runs async ORM calls (sync_to_async's
    single thread); the event loop's own thread may not query at all."""

    async def __aenter__(self) -> _WorkerQueries:
        self._ctx = CaptureQueriesContext(connection)
        await sync_to_async(self._ctx.__enter__)()
        return self

    async def __aexit__(self, *exc) -> None:
        await sync_to_async(self._ctx.__exit__)(None, None, None)
        self.count = await sync_to_async(lambda: len(self._ctx.captured_queries))()


@pytest.mark.django_db(transaction=True)
async def test_async_a_valid_key_opens_the_door_and_costs_no_query_when_warm(alice):
    key, raw = await sync_to_async(services.api_key_create)(
        organization=alice.org, created_by=alice.user, name="async"
    )
    async with _WorkerQueries() as cold:
        authed = await selectors.api_key_authenticate_async(raw_key=raw)
    assert authed.key_id == key.id
    assert authed.organization_id == alice.org.id
    assert cold.count == 1

    async with _WorkerQueries() as warm:
        for _ in range(10):
            assert (await selectors.api_key_authenticate_async(raw_key=raw)).key_id == key.id
    assert warm.count == 0


@pytest.mark.django_db(transaction=True)
async def test_async_malformed_and_bad_checksum_tokens_cost_no_query(alice):
    _, raw = await sync_to_async(services.api_key_create)(
        organization=alice.org, created_by=alice.user, name="async"
    )
    async with _WorkerQueries() as queries:
        for token in [*MALFORMED, _bad_checksum(raw)]:
            with pytest.raises(KeyRejected) as refused:
                await selectors.api_key_authenticate_async(raw_key=token)
            assert refused.value.code == "invalid_api_key"
    assert queries.count == 0


@pytest.mark.django_db(transaction=True)
async def test_async_unknown_revoked_and_expired_keys_are_refused(alice):
    async with _WorkerQueries() as queries:
        with pytest.raises(KeyRejected) as refused:
            await selectors.api_key_authenticate_async(raw_key=_unknown_but_well_formed())
    assert refused.value.reason == "Incorrect API key provided."
    assert queries.count == 1

    key, raw = await sync_to_async(services.api_key_create)(
        organization=alice.org, created_by=alice.user, name="async"
    )
    await selectors.api_key_authenticate_async(raw_key=raw)
    # A transactional test: the revoke commits and publishes for real.
    await sync_to_async(services.api_key_revoke)(api_key=key, actor=alice.user)
    with pytest.raises(KeyRejected) as refused:
        await selectors.api_key_authenticate_async(raw_key=raw)
    assert refused.value.code == "revoked_api_key"

    expired, expired_raw = await sync_to_async(services.api_key_create)(
        organization=alice.org, created_by=alice.user, name="expired"
    )
    await APIKey.objects.filter(pk=expired.pk).aupdate(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    with pytest.raises(KeyRejected) as refused:
        await selectors.api_key_authenticate_async(raw_key=expired_raw)
    assert refused.value.reason == "This API key has expired."

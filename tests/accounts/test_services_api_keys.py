"""Creating, editing and revoking keys: the secret shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.http import Http404
from django.utils import timezone

from accounts import keyformat, selectors, services
from accounts.exceptions import AccountsError
from accounts.models import APIKey, AuditLog

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(r"^llmapi_[0-9A-Za-z]{36}$")


def _create(tenant, **kwargs) -> tuple[APIKey, str]:
    kwargs.setdefault("name", "ci")
    return services.api_key_create(organization=tenant.org, created_by=tenant.user, **kwargs)


def _every_stored_value() -> list[str]:
    """Every cell of every table, as text."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                values.extend(
                    bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
                    for v in row
                )
    return values


def test_create_returns_a_well_formed_secret_and_the_key(alice):
    key, raw = _create(alice, name="  production  ")
    assert KEY_RE.match(raw)
    assert keyformat.is_well_formed(raw)
    assert key.name == "production"
    assert key.organization == alice.org
    assert key.created_by == alice.user
    assert key.status == "active"


def test_the_stored_hash_is_hmac_sha256_of_the_secret_under_the_pepper(alice, settings):
    key, raw = _create(alice)
    stored = APIKey.objects.values_list("hashed_key", flat=True).get(pk=key.pk)
    pepper = settings.API_KEY_PEPPER.encode()
    assert stored == hmac.new(pepper, raw.encode(), hashlib.sha256).hexdigest()


def test_a_different_pepper_stores_a_different_hash(alice, settings):
    key_a, raw_a = _create(alice)
    settings.API_KEY_PEPPER = "another-pepper"
    key_b, raw_b = _create(alice)
    assert key_b.hashed_key == hmac.new(b"another-pepper", raw_b.encode(), "sha256").hexdigest()
    assert key_a.hashed_key != keyformat.hash_key(raw_a)  # the old key doesn't hash the same now


def test_the_secret_is_in_no_column_of_the_key_row(alice):
    key, raw = _create(alice)
    body = raw[len("llmapi_") : -6]
    row = APIKey.objects.get(pk=key.pk)
    for field in APIKey._meta.concrete_fields:
        value = str(field.value_from_object(row))
        assert raw not in value, field.name
        assert body not in value, field.name


def test_the_secret_is_nowhere_in_the_database_nor_the_logs(alice, caplog):
    with caplog.at_level(logging.DEBUG):
        key, raw = _create(alice)
        selectors.api_key_authenticate(raw_key=raw)
    body = raw[len("llmapi_") : -6]
    audit = AuditLog.objects.get(organization=alice.org, action=AuditLog.Action.API_KEY_CREATED)
    assert raw not in audit.target
    assert raw not in str(audit.data)
    assert audit.data["key_id"] == str(key.id)

    stored = _every_stored_value()
    assert key.hashed_key in stored  # the scan does see the key's row
    assert not [v for v in stored if body in v]
    assert body not in caplog.text


def test_the_masked_display_is_the_prefix_an_ellipsis_and_the_last_four(alice):
    key, raw = _create(alice)
    assert key.masked == f"{raw[:11]}…{raw[-4:]}"
    assert key.masked.startswith("llmapi_")
    assert key.masked in str(key)
    audit = AuditLog.objects.get(organization=alice.org, action=AuditLog.Action.API_KEY_CREATED)
    assert audit.target == f"ci ({key.masked})"


def test_create_leaves_an_audit_row(alice):
    key, _ = _create(alice)
    audit = AuditLog.objects.get(organization=alice.org, action=AuditLog.Action.API_KEY_CREATED)
    assert audit.actor == alice.user
    assert audit.data["key_id"] == str(key.id)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "   "}, "needs a name"),
        ({"expires_at": timezone.now() - timedelta(seconds=1)}, "future"),
        ({"spend_limit_nanousd": -1}, "negative"),
        ({"spend_limit_period": "hourly"}, "period"),
        ({"rpm_limit": 0}, "requests per minute"),
        ({"tpm_limit": 0}, "tokens per minute"),
        ({"allowed_models": ["  "]}, "model ids"),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(alice, kwargs, message):
    with pytest.raises(AccountsError, match=message):
        _create(alice, **kwargs)
    assert not APIKey.objects.exists()
    assert not AuditLog.objects.filter(action=AuditLog.Action.API_KEY_CREATED).exists()


def test_update_changes_limits_and_the_gateway_sees_them(alice, django_capture_on_commit_callbacks):
    key, raw = _create(alice, rpm_limit=10)
    before = selectors.api_key_authenticate(raw_key=raw)
    assert before.rpm_limit == 10
    assert before.spend_limit_nanousd is None

    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_update(
            api_key=key,
            actor=alice.user,
            name="renamed",
            rpm_limit=100,
            tpm_limit=50_000,
            spend_limit_nanousd=5_000_000_000,
            spend_limit_period=APIKey.SpendPeriod.DAILY,
            allowed_models=["google/gemini-3.1-flash-lite"],
        )

    after = selectors.api_key_authenticate(raw_key=raw)
    assert after.name == "renamed"
    assert after.rpm_limit == 100
    assert after.tpm_limit == 50_000
    assert after.spend_limit_nanousd == 5_000_000_000
    assert after.spend_limit_period == "daily"
    assert after.allows_model("google/gemini-3.1-flash-lite")
    assert not after.allows_model("openai/gpt-4.1-mini")

    key.refresh_from_db()
    assert key.rpm_limit == 100
    audit = AuditLog.objects.get(organization=alice.org, action=AuditLog.Action.API_KEY_UPDATED)
    assert audit.actor == alice.user
    assert audit.data["fields"] == sorted(
        [
            "name",
            "rpm_limit",
            "tpm_limit",
            "spend_limit_nanousd",
            "spend_limit_period",
            "allowed_models",
        ]
    )


def test_update_refuses_fields_that_are_not_settings(alice):
    key, _ = _create(alice)
    for field in ("hashed_key", "organization", "revoked_at"):
        with pytest.raises(AccountsError, match="Can't change"):
            services.api_key_update(api_key=key, actor=alice.user, **{field: None})
    assert APIKey.objects.get(pk=key.pk).hashed_key == key.hashed_key


def test_update_refuses_bad_limits_and_changes_nothing(alice):
    key, raw = _create(alice, rpm_limit=10)
    with pytest.raises(AccountsError):
        services.api_key_update(api_key=key, actor=alice.user, rpm_limit=0)
    with pytest.raises(AccountsError):
        services.api_key_update(api_key=key, actor=alice.user, name=" ")
    key.refresh_from_db()
    assert key.rpm_limit == 10
    assert key.name == "ci"
    assert selectors.api_key_authenticate(raw_key=raw).rpm_limit == 10


def test_revoke_refuses_the_key_and_leaves_one_audit_row(
    alice, bob, django_capture_on_commit_callbacks
):
    key, raw = _create(bob)
    selectors.api_key_authenticate(raw_key=raw)
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(api_key=key, actor=alice.user)
    key.refresh_from_db()
    assert key.status == "revoked"
    assert key.revoked_by == alice.user
    with pytest.raises(selectors.KeyRejected, match="revoked"):
        selectors.api_key_authenticate(raw_key=raw)

    revoked_at = key.revoked_at
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(api_key=key, actor=bob.user)  # a second click changes nothing
    key.refresh_from_db()
    assert key.revoked_at == revoked_at
    assert key.revoked_by == alice.user
    audits = AuditLog.objects.filter(action=AuditLog.Action.API_KEY_REVOKED)
    assert [(a.actor, a.organization) for a in audits] == [(alice.user, alice.org)]


def test_another_tenant_cannot_reach_a_key_by_id(alice, charlie):
    key, _ = _create(alice)
    assert selectors.api_key_get(organization=alice.org, key_id=key.id) == key
    with pytest.raises(Http404):
        selectors.api_key_get(organization=charlie.org, key_id=key.id)
    assert list(selectors.api_key_list(organization=charlie.org)) == []

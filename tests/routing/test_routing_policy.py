"""An organization's default routing policy: the service, the settings page, the hot-path
selector and how it merges with a request's own preferences."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from accounts.models import AuditLog, Membership, Role
from routing import selectors
from routing.models import RoutingPolicy
from routing.policy import merge, routing_policy_update
from routing.router import Preferences, plan
from routing.selectors import (
    DEFAULT_ROUTING,
    OrgRoutingDefaults,
    policy_cache,
    routing_defaults_get,
    routing_policy_for,
    routing_policy_get,
)
from routing.services import catalog_load
from routing.snapshot import catalog
from tests.factories import UserFactory

HERO = "google/gemini-3.1-flash-lite"


@pytest.fixture(autouse=True)
def _fresh_policy_cache():
    policy_cache.clear_local()
    yield
    policy_cache.clear_local()


@pytest.fixture
def catalog_loaded(db):
    catalog_load()


def _update(tenant, **changes):
    values = {
        "strategy": "price",
        "provider_order": [],
        "ignored_providers": [],
        "allow_fallbacks": True,
        **changes,
    }
    return routing_policy_update(organization=tenant.org, actor=tenant.user, **values)


def _url(org):
    return reverse("routing_settings", kwargs={"org_id": org.id})


# The service ---------------------------------------------------------------------------------


def test_update_saves_the_policy_and_leaves_an_audit_row(alice, catalog_loaded):
    policy = _update(
        alice,
        strategy="latency",
        provider_order=["Vertex-AI", " google-ai-studio "],
        ignored_providers=["openrouter"],
        allow_fallbacks=False,
    )

    policy.refresh_from_db()
    assert policy.organization == alice.org
    assert policy.strategy == "latency"
    assert policy.provider_order == ["vertex-ai", "google-ai-studio"]
    assert policy.ignored_providers == ["openrouter"]
    assert policy.allow_fallbacks is False
    entry = AuditLog.objects.get(organization=alice.org, action="org.routing_changed")
    assert entry.actor == alice.user
    assert entry.data["to"] == {
        "strategy": "latency",
        "provider_order": ["vertex-ai", "google-ai-studio"],
        "ignored_providers": ["openrouter"],
        "allow_fallbacks": False,
    }
    assert entry.data["from"]["strategy"] == "price"


def test_an_update_that_changes_nothing_writes_nothing(alice, catalog_loaded):
    _update(alice, strategy="throughput")
    _update(alice, strategy="throughput")
    assert RoutingPolicy.objects.filter(organization=alice.org).count() == 1
    assert AuditLog.objects.filter(action="org.routing_changed").count() == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"strategy": "cheapest"}, "strategy"),
        ({"provider_order": ["no-such-provider"]}, "provider_order"),
        ({"ignored_providers": ["nope"]}, "ignored_providers"),
        ({"provider_order": ["openai", "openai"]}, "provider_order"),
        ({"provider_order": ["openai"], "ignored_providers": ["openai"]}, "ignored_providers"),
        (
            {
                "ignored_providers": [
                    "google-ai-studio",
                    "vertex-ai",
                    "openrouter",
                    "private-vllm",
                    "openai",
                    "anthropic",
                ]
            },
            "ignored_providers",
        ),
    ],
)
def test_invalid_policies_are_refused_and_change_nothing(alice, catalog_loaded, changes, field):
    with pytest.raises(ValidationError) as caught:
        _update(alice, **changes)
    assert field in caught.value.message_dict
    assert not RoutingPolicy.objects.filter(organization=alice.org).exists()
    assert not AuditLog.objects.filter(action="org.routing_changed").exists()


def test_the_database_refuses_an_unknown_strategy(alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        RoutingPolicy.objects.create(organization=alice.org, strategy="fastest")


# The settings page ---------------------------------------------------------------------------


def test_the_settings_page_is_linked_and_shows_the_catalogs_providers(alice, catalog_loaded, login):
    client = login(alice.user)
    settings_page = client.get(reverse("org_settings", kwargs={"org_id": alice.org.id}))
    assert _url(alice.org) in settings_page.content.decode()

    response = client.get(_url(alice.org))
    assert response.status_code == 200
    html = response.content.decode()
    for slug in ("google-ai-studio", "vertex-ai", "openrouter", "anthropic"):
        assert f'value="{slug}"' in html
    assert 'value="price" checked' in html
    assert 'type="submit"' in html


def test_an_admin_saves_the_policy_from_the_page(alice, catalog_loaded, login):
    client = login(alice.user)
    response = client.post(
        _url(alice.org),
        {
            "strategy": "throughput",
            "provider_order": "vertex-ai, google-ai-studio",
            "ignored_providers": ["openrouter"],
            "allow_fallbacks": "on",
        },
    )
    assert response.status_code == 302
    policy = RoutingPolicy.objects.get(organization=alice.org)
    assert policy.strategy == "throughput"
    assert policy.provider_order == ["vertex-ai", "google-ai-studio"]
    assert policy.ignored_providers == ["openrouter"]
    assert policy.allow_fallbacks is True
    page = client.get(_url(alice.org)).content.decode()
    assert 'value="throughput" checked' in page
    assert "vertex-ai, google-ai-studio" in page


def test_the_page_shows_the_services_errors_on_the_form(alice, catalog_loaded, login):
    response = login(alice.user).post(
        _url(alice.org), {"strategy": "price", "provider_order": "vertex-ai, nowhere"}
    )
    assert response.status_code == 200
    assert "&#x27;nowhere&#x27; is not a provider in the catalog." in response.content.decode()
    assert not RoutingPolicy.objects.exists()


def test_a_developer_sees_the_policy_but_may_not_change_it(bob, catalog_loaded, login):
    client = login(bob.user)
    page = client.get(_url(bob.org))
    assert page.status_code == 200
    assert "Only owners and admins can change" in page.content.decode()
    response = client.post(_url(bob.org), {"strategy": "latency"})
    assert response.status_code == 403
    assert not RoutingPolicy.objects.exists()


def test_another_tenant_gets_404(alice, charlie, catalog_loaded, login):
    client = login(charlie.user)
    assert client.get(_url(alice.org)).status_code == 404
    assert client.post(_url(alice.org), {"strategy": "latency"}).status_code == 404
    assert not RoutingPolicy.objects.exists()


# The selector --------------------------------------------------------------------------------


def test_an_organization_without_a_policy_gets_the_defaults(alice):
    assert routing_defaults_get(organization_id=alice.org.id) == OrgRoutingDefaults(
        strategy="price", order=(), ignore=(), allow_fallbacks=True
    )
    assert routing_policy_get(organization=alice.org).pk is None


def test_the_sync_warm_path_costs_no_query(alice, catalog_loaded, django_assert_num_queries):
    _update(alice, strategy="latency", provider_order=["openai"])
    with django_assert_num_queries(1):
        first = routing_defaults_get(organization_id=alice.org.id)
    with django_assert_num_queries(0):
        again = routing_defaults_get(organization_id=alice.org.id)
    assert first == again == OrgRoutingDefaults("latency", ("openai",), (), True)


def test_the_async_warm_path_costs_no_query(alice, catalog_loaded, django_assert_num_queries):
    # async_to_sync runs the async ORM's query on this thread, where the count is kept.
    _update(alice, strategy="throughput")
    with django_assert_num_queries(1):
        first = async_to_sync(routing_policy_for)(alice.org.id)
    with django_assert_num_queries(0):
        again = async_to_sync(routing_policy_for)(alice.org.id)
    assert first == again
    assert first.strategy == "throughput"


def test_a_process_with_a_cold_local_copy_reads_the_shared_cache_not_the_database(
    alice, django_assert_num_queries
):
    async_to_sync(routing_policy_for)(alice.org.id)  # fills the shared cache too
    policy_cache.clear_local()  # another server process: its own dict, the same Redis
    with django_assert_num_queries(0):
        assert async_to_sync(routing_policy_for)(alice.org.id) == DEFAULT_ROUTING


def test_an_update_overwrites_the_cached_policy_once_committed(
    alice, catalog_loaded, django_capture_on_commit_callbacks, django_assert_num_queries
):
    assert async_to_sync(routing_policy_for)(alice.org.id) == DEFAULT_ROUTING
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _update(alice, strategy="latency", ignored_providers=["openrouter"])
    # Not committed yet: readers keep the old policy.
    assert async_to_sync(routing_policy_for)(alice.org.id) == DEFAULT_ROUTING
    for callback in callbacks:
        callback()
    expected = OrgRoutingDefaults("latency", (), ("openrouter",), True)
    with django_assert_num_queries(0):
        assert async_to_sync(routing_policy_for)(alice.org.id) == expected
    policy_cache.clear_local()  # and other processes, through the shared cache
    with django_assert_num_queries(0):
        assert routing_defaults_get(organization_id=alice.org.id) == expected


def test_policies_are_per_organization(alice, charlie, catalog_loaded):
    _update(alice, strategy="latency")
    assert async_to_sync(routing_policy_for)(alice.org.id).strategy == "latency"
    assert async_to_sync(routing_policy_for)(charlie.org.id) == DEFAULT_ROUTING


def test_a_local_copy_lives_only_a_few_seconds(alice, monkeypatch):
    assert selectors.POLICY_LOCAL_TTL <= 5
    clock = [1000.0]
    from config import localcache

    monkeypatch.setattr(localcache.time, "monotonic", lambda: clock[0])
    routing_defaults_get(organization_id=alice.org.id)
    assert str(alice.org.id) in policy_cache._local
    clock[0] += selectors.POLICY_LOCAL_TTL + 0.1
    assert policy_cache._local_get(str(alice.org.id)) is None


# Merging with a request's preferences --------------------------------------------------------

ORG = OrgRoutingDefaults(
    strategy="latency",
    order=("vertex-ai", "google-ai-studio"),
    ignore=("openrouter",),
    allow_fallbacks=True,
)


def test_a_request_without_preferences_gets_the_organizations():
    prefs, strategy = merge(ORG, Preferences(), None)
    assert strategy == "latency"
    assert prefs.order == ("vertex-ai", "google-ai-studio")
    assert prefs.ignore == ("openrouter",)
    assert prefs.allow_fallbacks is True


def test_the_requests_own_fields_win_one_by_one():
    request = Preferences(order=("openai",), ignore=("vertex-ai",), max_prompt_price=5)
    prefs, strategy = merge(ORG, request, "price")
    assert strategy == "price"
    assert prefs.order == ("openai",)
    assert prefs.ignore == ("vertex-ai", "openrouter")  # narrowed, never widened
    assert prefs.max_prompt_price == 5

    prefs, strategy = merge(ORG, Preferences(order=("openai",)), None)
    assert (prefs.order, prefs.ignore, strategy) == (("openai",), ("openrouter",), "latency")


def test_a_provider_the_organization_ignores_stays_ignored_whatever_the_request_says():
    for request in (
        Preferences(only=("openrouter",)),
        Preferences(order=("openrouter",)),
        Preferences(ignore=("vertex-ai",)),
    ):
        prefs, _ = merge(ORG, request, None)
        assert "openrouter" in prefs.ignore


def test_either_side_turning_fallbacks_off_turns_them_off():
    strict = OrgRoutingDefaults("price", ("vertex-ai",), (), False)
    assert merge(strict, Preferences(), None)[0].allow_fallbacks is False
    assert merge(ORG, Preferences(allow_fallbacks=False), None)[0].allow_fallbacks is False
    assert merge(ORG, Preferences(), None)[0].allow_fallbacks is True


def test_no_policy_changes_nothing():
    request = Preferences(only=("openai",), sort="throughput")
    assert merge(DEFAULT_ROUTING, request, "throughput") == (request, "throughput")
    assert merge(DEFAULT_ROUTING, Preferences(), None) == (Preferences(), "price")


def test_merged_preferences_route_as_the_organization_asked(alice, catalog_loaded):
    _update(
        alice,
        strategy="price",
        provider_order=["private-vllm"],
        ignored_providers=["google-ai-studio"],
    )
    defaults = async_to_sync(routing_policy_for)(alice.org.id)
    model = catalog.get().resolve(HERO)
    prefs, strategy = merge(defaults, Preferences(), None)
    providers = [e.provider for e in plan([model], prefs, strategy=strategy)]
    assert providers[0] == "private-vllm"
    assert "google-ai-studio" not in providers
    assert len(providers) == len(model.endpoints) - 1


def test_a_viewer_membership_is_read_only_too(alice, catalog_loaded, login):
    viewer = UserFactory()
    Membership.objects.create(organization=alice.org, user=viewer, role=Role.VIEWER)
    client = login(viewer)
    assert client.get(_url(alice.org)).status_code == 200
    assert client.post(_url(alice.org), {"strategy": "latency"}).status_code == 403

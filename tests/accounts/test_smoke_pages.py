from __future__ import annotations

from django.urls import reverse


def test_landing_shows_the_two_line_quickstart(client, db):
    response = client.get("/")
    assert response.status_code == 200
    assert b'base_url="http://testserver/v1"' in response.content


def test_dashboard_lands_on_the_current_organization(alice, login):
    client = login(alice.user)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert response["Location"] == reverse("org_overview", kwargs={"org_id": alice.org.id})
    page = client.get(response["Location"])
    assert page.status_code == 200
    for label in (
        "Overview",
        "Playground",
        "API keys",
        "Usage",
        "Logs",
        "Billing",
        "Members",
        "Settings",
    ):
        assert label.encode() in page.content


def test_account_pages_keep_the_organization_sidebar(alice, login):
    client = login(alice.user)
    client.get(reverse("org_overview", kwargs={"org_id": alice.org.id}))
    page = client.get(reverse("account_change_password"))
    assert page.status_code == 200
    assert reverse("api_keys", kwargs={"org_id": alice.org.id}).encode() in page.content


def test_errors_have_product_pages(alice, charlie, login):
    client = login(charlie.user)
    missing = client.get(reverse("api_keys", kwargs={"org_id": alice.org.id}))
    assert missing.status_code == 404
    assert b"Page not found" in missing.content
    assert b"Back to the dashboard" in missing.content
    viewer = login(alice.user)
    assert viewer.get("/favicon.ico").status_code == 301

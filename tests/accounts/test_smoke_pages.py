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

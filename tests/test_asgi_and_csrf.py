"""The ASGI application (Channels' router in front of Django) and CSRF on forms."""

from __future__ import annotations

import pytest
from channels.testing.http import HttpCommunicator
from channels.testing.websocket import WebsocketCommunicator
from django.test import Client
from django.urls import reverse

from config.asgi import application


@pytest.mark.django_db(transaction=True)
async def test_the_asgi_app_serves_http():
    communicator = HttpCommunicator(
        application, "GET", "/healthz", headers=[(b"host", b"localhost")]
    )
    response = await communicator.get_response()
    assert response["status"] == 200
    assert response["body"] == b"ok"


@pytest.mark.django_db(transaction=True)
async def test_pages_carry_a_content_security_policy():
    communicator = HttpCommunicator(application, "GET", "/", headers=[(b"host", b"localhost")])
    response = await communicator.get_response()
    headers = {k.decode().lower(): v.decode() for k, v in response["headers"]}
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in headers["content-security-policy"]


async def test_websockets_from_another_origin_are_refused():
    communicator = WebsocketCommunicator(
        application, "/ws/anything/", headers=[(b"origin", b"https://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


def test_forms_refuse_a_post_without_the_csrf_token(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    response = client.post(reverse("api_keys", kwargs={"org_id": alice.org.id}), {"name": "sneaky"})
    assert response.status_code == 403
    assert not alice.org.api_keys.exists()

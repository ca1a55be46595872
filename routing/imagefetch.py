"""Image URLs for self-hosted endpoints, fetched by us and inlined as data: URLs.

A self-hosted deployment sits inside our network: handed a client's URL, it would fetch
whatever that URL names (a metadata service, an internal admin page). So we fetch it instead,
and only from the public internet: the host is resolved once, every address it resolves to must
be public (not private, loopback, link-local, multicast, reserved or unspecified), and the
connection goes to that checked address (no second lookup an attacker's DNS could answer
differently). No redirects, a size cap, an image content type and a time limit.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings

DEFAULT_PORTS = {"http": 80, "https": 443}
_IMAGE_TYPE = re.compile(r"image/[a-z0-9.+-]+")


class ImageRefused(Exception):
    """The image can't be fetched safely; the message is safe to show the caller."""


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return settings.ROUTING_IMAGE_FETCH_ALLOW_LOOPBACK
    return address.is_global and not (
        address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def _resolve(host: str, port: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address to connect to; refused unless every address the host has is allowed."""
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (OSError, UnicodeError):
            raise ImageRefused(f"The image host {host!r} could not be resolved.") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses or not all(_allowed(a) for a in addresses):
        raise ImageRefused(
            f"The image host {host!r} is not a public internet address; send the image "
            "as a data URL instead."
        )
    return addresses[0]


async def fetch_image(url: str) -> str:
    """The image at `url` as a data: URL, or ImageRefused."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ImageRefused("Image URLs must be http(s) URLs with a host.")
    if parts.username or parts.password:
        raise ImageRefused("Image URLs can't carry credentials.")
    host = parts.hostname
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ImageRefused("The image URL's port is not valid.") from None
    address = await _resolve(host, port)
    netloc = f"[{address}]" if address.version == 6 else str(address)
    direct = urlunsplit((parts.scheme, f"{netloc}:{port}", parts.path or "/", parts.query, ""))
    # The URL names the checked address; Host and TLS (SNI and certificate) name the host.
    host_header = host if port == DEFAULT_PORTS[parts.scheme] else f"{host}:{port}"
    limit = settings.ROUTING_IMAGE_FETCH_MAX_BYTES
    try:
        async with asyncio.timeout(settings.ROUTING_IMAGE_FETCH_TIMEOUT):
            async with httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                timeout=settings.ROUTING_IMAGE_FETCH_TIMEOUT,
            ) as client:
                request = client.build_request(
                    "GET",
                    direct,
                    headers={"Host": host_header, "Accept": "image/*"},
                    extensions={"sni_hostname": host} if parts.scheme == "https" else {},
                )
                response = await client.send(request, stream=True)
                try:
                    return await _read_image(response, limit)
                finally:
                    await response.aclose()
    except TimeoutError:
        raise ImageRefused("The image took too long to download.") from None
    except httpx.HTTPError:
        raise ImageRefused("The image could not be downloaded.") from None


async def _read_image(response: httpx.Response, limit: int) -> str:
    if response.is_redirect:
        raise ImageRefused(
            "The image URL redirects; send the final URL (redirects are not followed)."
        )
    if response.status_code != 200:
        raise ImageRefused(f"The image URL answered HTTP {response.status_code}.")
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not _IMAGE_TYPE.fullmatch(content_type):
        raise ImageRefused("The image URL did not answer with an image content type.")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ImageRefused(f"The image is over {limit // (1024 * 1024)} MiB.")
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            raise ImageRefused(f"The image is over {limit // (1024 * 1024)} MiB.")
    return f"data:{content_type};base64,{base64.b64encode(bytes(data)).decode()}"


def has_remote_images(body: dict[str, Any]) -> bool:
    return any(True for _ in _remote_parts(body))


def _remote_parts(body: dict[str, Any]):
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                image = part.get("image_url")
                url = image.get("url") if isinstance(image, dict) else None
                if isinstance(url, str) and url.startswith(("http://", "https://")):
                    yield part


async def inline_images(body: dict[str, Any]) -> dict[str, Any]:
    """A copy of `body` whose http(s) image URLs are data: URLs (fetched concurrently)."""
    inlined = dict(body)
    inlined["messages"] = copy.deepcopy(body.get("messages"))
    parts = list(_remote_parts(inlined))
    if not parts:
        return body
    fetched = await asyncio.gather(*(fetch_image(p["image_url"]["url"]) for p in parts))
    for part, data_url in zip(parts, fetched, strict=True):
        part["image_url"] = {**part["image_url"], "url": data_url}
    return inlined


class InlinedBody:
    """A request's body with images inlined, fetched once, on the first self-hosted attempt."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body
        self._task: asyncio.Future | None = None

    async def get(self) -> dict[str, Any]:
        if self._task is None:
            self._task = asyncio.ensure_future(inline_images(self._body))
        return await asyncio.shield(self._task)

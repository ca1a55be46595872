"""The aiohttp application: provider routes per wire, the shared request flow, the control API.

    /{slug}/v1/chat/completions, /{slug}/v1/embeddings, /{slug}/v1/models    OpenAI wire
    /{slug}/v1/messages                                                     Anthropic wire
    /{slug}/v1beta/models/{model}:{action}                                  Gemini (AI Studio)
    /{slug}/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:{a}  Gemini (Vertex AI)
    /_sim/health, /_sim/providers[/{slug}], /_sim/reset, /_sim/stats        control API
    /_sim/providers/{slug}/last_request   the last chat body that provider received, as sent

Any slug works; the wire is chosen by the path, so one slug could even speak several.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping
from dataclasses import replace
from types import ModuleType
from typing import Any

import orjson
from aiohttp import web

from . import anthropic, faults, gemini, openai
from .faults import SHUTDOWN_KEY
from .generation import BadRequest, ChatRequest, Output, Usage, generate, json_pieces, warm_up
from .state import ProfileError, Provider, Registry
from .streaming import json_response, send, wait_latency

REGISTRY_KEY: web.AppKey[Registry] = web.AppKey("sim_registry", Registry)
CONTROL_TOKEN_KEY: web.AppKey[str] = web.AppKey("sim_control_token", str)


def make_app(
    profiles: Mapping[str, Mapping[str, Any]] | None = None, *, control_token: str = ""
) -> web.Application:
    """`profiles` overrides the catalog's defaults per slug (partial dicts); the key "*"
    applies to every provider, e.g. {"*": {"latency_ms": 0, "tokens_per_second": 0}}.
    The control API (all of /_sim/ but health) answers only `Authorization: Bearer
    <control_token>`; without a token it is off (403)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)  # base64 images are large
    app[REGISTRY_KEY] = Registry(profiles)
    app[CONTROL_TOKEN_KEY] = control_token
    app[SHUTDOWN_KEY] = asyncio.Event()
    app.on_shutdown.append(_release_stalls)
    warm_up()

    r = app.router
    r.add_get("/_sim/health", health)
    r.add_get("/_sim/providers", _guarded(providers_list))
    r.add_get("/_sim/providers/{slug}", _guarded(provider_get))
    r.add_put("/_sim/providers/{slug}", _guarded(provider_update))
    r.add_patch("/_sim/providers/{slug}", _guarded(provider_update))
    r.add_post("/_sim/providers/{slug}/replies", _guarded(provider_replies))
    r.add_get("/_sim/providers/{slug}/last_request", _guarded(provider_last_request))
    r.add_post("/_sim/reset", _guarded(reset))
    r.add_get("/_sim/stats", _guarded(stats))

    r.add_post("/{slug}/v1/chat/completions", openai_chat)
    r.add_post("/{slug}/v1/embeddings", openai_embeddings)
    r.add_get("/{slug}/v1/models", openai_models)
    r.add_post("/{slug}/v1/messages", anthropic_messages)
    r.add_post("/{slug}/v1beta/models/{target}", gemini_ai_studio)
    r.add_post("/{slug}/v1/models/{target}", gemini_ai_studio)
    r.add_post(
        "/{slug}/v1/projects/{project}/locations/{location}/publishers/google/models/{target}",
        gemini_vertex,
    )
    return app


async def _release_stalls(app: web.Application) -> None:
    app[SHUTDOWN_KEY].set()


def _with_detail(response: web.Response, detail: str) -> web.Response:
    """An error answer whose message goes on with `detail`, as a real provider's can name the
    account, project or key it was called with (every wire has error.message)."""
    if not detail:
        return response
    body = orjson.loads(response.body)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return response
    error["message"] = f"{error.get('message') or ''} {detail}".strip()
    response.body = orjson.dumps(body)
    return response


def _provider(request: web.Request) -> Provider:
    provider = request.app[REGISTRY_KEY].get(request.match_info["slug"])
    provider.stats.requests += 1
    return provider


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("We could not parse the JSON body of your request.") from None


# --- The shared flow of a chat request ---


async def _chat(
    request: web.Request,
    provider: Provider,
    wire: ModuleType,
    parse: Any,
) -> web.StreamResponse:
    stats = provider.stats
    try:
        body = await _body(request)
        provider.last_request = body
        chat: ChatRequest = parse(body)
    except BadRequest as exc:
        stats.error("bad_request")
        return wire.bad_request(exc)
    if chat.stream:
        stats.streamed += 1

    profile = provider.profile
    kind = provider.next_fault()
    if kind is not None:
        stats.error(kind)
        if kind in ("429", "500", "503"):
            await wait_latency(profile)
            return _with_detail(wire.fault(kind, profile.retry_after), profile.error_detail)
        if kind == "stall":
            return await faults.stall(request)
        if kind == "reset":
            await wait_latency(profile)
            faults.abort(request)
            return web.Response()  # never sent: the connection is gone

    registry = request.app[REGISTRY_KEY]
    written = written_1h = 0
    if chat.cache_prefix_key is not None:
        cached, written_5m, written_1h = registry.explicit_cache(
            provider.slug, chat.cache_prefix_key, chat.cache_segments
        )
        written = written_5m + written_1h
    else:
        cached = registry.cached_tokens(provider.slug, chat.cache_keys, chat.prompt_tokens)
    if provider.replies:
        output = Output(json_pieces(provider.replies.popleft()), "stop", seed=chat.seed)
    else:
        output = generate(chat, output_tokens=profile.output_tokens)
        for index in range(1, chat.choices):
            other = generate(
                replace(chat, seed=chat.seed + index), output_tokens=profile.output_tokens
            )
            output.others.append(other)
    usage = Usage(
        chat.prompt_tokens,
        cached,
        output.completion_tokens,
        output.reasoning_tokens,
        cache_write_tokens=written,
        cache_write_1h_tokens=written_1h,
    )
    stats.prompt_tokens += usage.prompt_tokens
    stats.cached_tokens += cached

    if chat.stream:
        content_type = wire.STREAM_CONTENT_TYPE
        if wire is gemini and not chat.alt_sse:
            content_type = gemini.ARRAY_CONTENT_TYPE
        response = web.StreamResponse(
            headers={"Content-Type": content_type, "Cache-Control": "no-cache"}
        )
        cut_after = profile.cut_after_tokens if kind == "cut" else None
        stall_after = profile.cut_after_tokens if kind == "stall_mid" else None
        frames = wire.frames(chat, output, usage)
        delivered = await send(
            request, response, frames, profile, cut_after=cut_after, stall_after=stall_after
        )
        if delivered and kind is None:
            stats.ok += 1
            stats.completion_tokens += usage.completion_tokens
        return response

    body = wire.render(chat, output, usage)
    await wait_latency(profile, output.completion_tokens)
    if kind == "cut":
        return await faults.cut_body(request, body, content_type="application/json")
    if kind == "stall_mid":
        return await faults.stall_body(request, body, content_type="application/json")
    stats.ok += 1
    stats.completion_tokens += usage.completion_tokens
    return json_response(body)


# --- OpenAI wire ---


async def openai_chat(request: web.Request) -> web.StreamResponse:
    provider = _provider(request)
    if (denied := openai.auth_error(request)) is not None:
        provider.stats.error("auth")
        return denied
    return await _chat(request, provider, openai, lambda body: openai.parse_chat(body, request))


async def openai_embeddings(request: web.Request) -> web.StreamResponse:
    provider = _provider(request)
    stats = provider.stats
    if (denied := openai.auth_error(request)) is not None:
        stats.error("auth")
        return denied
    try:
        parsed = openai.parse_embeddings(await _body(request))
    except BadRequest as exc:
        stats.error("bad_request")
        return openai.bad_request(exc)
    return await _embeddings(
        request, provider, openai, parsed[2], lambda: openai.render_embeddings(*parsed)
    )


async def openai_models(request: web.Request) -> web.StreamResponse:
    if (denied := openai.auth_error(request)) is not None:
        return denied
    slug = request.match_info["slug"]
    models = request.app[REGISTRY_KEY].models
    names = models.get(slug) or sorted({name for names in models.values() for name in names})
    return json_response(openai.render_models(slug, names))


async def _embeddings(
    request: web.Request, provider: Provider, wire: ModuleType, tokens: list[int], render: Any
) -> web.StreamResponse:
    stats = provider.stats
    profile = provider.profile
    kind = provider.next_fault()
    if kind is not None:
        stats.error(kind)
        if kind == "stall":
            return await faults.stall(request)
        await wait_latency(profile)
        if kind == "reset":
            faults.abort(request)
            return web.Response()
        if kind == "cut":
            return await faults.cut_body(request, render(), content_type="application/json")
        if kind == "stall_mid":
            return await faults.stall_body(request, render(), content_type="application/json")
        return _with_detail(wire.fault(kind, profile.retry_after), profile.error_detail)
    await wait_latency(profile)
    body = render()
    stats.ok += 1
    stats.prompt_tokens += sum(tokens)
    return json_response(body)


# --- Anthropic wire ---


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    provider = _provider(request)
    if (denied := anthropic.auth_error(request)) is not None:
        provider.stats.error("auth")
        return denied
    return await _chat(
        request, provider, anthropic, lambda body: anthropic.parse_chat(body, request)
    )


# --- Gemini wire ---


async def gemini_ai_studio(request: web.Request) -> web.StreamResponse:
    return await _gemini(request, vertex=False)


async def gemini_vertex(request: web.Request) -> web.StreamResponse:
    return await _gemini(request, vertex=True)


async def _gemini(request: web.Request, *, vertex: bool) -> web.StreamResponse:
    model, _, action = request.match_info["target"].rpartition(":")
    if not model or action not in (
        "generateContent",
        "streamGenerateContent",
        "embedContent",
        "batchEmbedContents",
    ):
        return gemini.error(404, f"Method not found: {request.match_info['target']}")
    provider = _provider(request)
    if (denied := gemini.auth_error(request, vertex=vertex)) is not None:
        provider.stats.error("auth")
        return denied
    if action in ("embedContent", "batchEmbedContents"):
        batch = action == "batchEmbedContents"
        try:
            items = gemini.parse_embed(await _body(request), model, batch=batch)
        except BadRequest as exc:
            provider.stats.error("bad_request")
            return gemini.bad_request(exc)
        tokens = [t for _, t, _ in items]
        return await _embeddings(
            request, provider, gemini, tokens, lambda: gemini.render_embed(items, batch=batch)
        )
    stream = action == "streamGenerateContent"
    return await _chat(
        request,
        provider,
        gemini,
        lambda body: gemini.parse_chat(body, request, model=model, stream=stream),
    )


# --- Control API ---


def _json(data: Any, status: int = 200) -> web.Response:
    return json_response(orjson.dumps(data, option=orjson.OPT_INDENT_2), status=status)


def _guarded(handler: Any) -> Any:
    """Only a caller holding the control token may read or change the simulator's state:
    anyone else who can reach it could otherwise make every simulated provider fail, or read
    the last request bodies it received."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        expected = request.app[CONTROL_TOKEN_KEY]
        if not expected:
            return _json(
                {
                    "error": "the control API is off: start the simulator with a control token "
                    "(LLMAPI_SIMULATOR_CONTROL_TOKEN)"
                },
                403,
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            return _json({"error": "the control API needs its token (Authorization: Bearer)"}, 401)
        return await handler(request)

    return guarded


async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def providers_list(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    return _json({"providers": [p.as_dict() for p in registry.providers.values()]})


async def provider_get(request: web.Request) -> web.Response:
    return _json(request.app[REGISTRY_KEY].get(request.match_info["slug"]).as_dict())


async def provider_update(request: web.Request) -> web.Response:
    try:
        changes = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return _json({"error": "the body must be a JSON object"}, 400)
    if not isinstance(changes, dict):
        return _json({"error": "the body must be a JSON object"}, 400)
    provider = request.app[REGISTRY_KEY].get(request.match_info["slug"])
    try:
        provider.update(changes)
    except ProfileError as exc:
        return _json({"error": str(exc)}, 400)
    return _json(provider.as_dict())


async def provider_replies(request: web.Request) -> web.Response:
    """Queue scripted answers: {"replies": ["text", ...]} (appended; reset clears them)."""
    try:
        body = orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        body = None
    replies = body.get("replies") if isinstance(body, dict) else None
    if not isinstance(replies, list) or not all(isinstance(r, str) for r in replies):
        return _json({"error": 'the body must be {"replies": ["text", ...]}'}, 400)
    provider = request.app[REGISTRY_KEY].get(request.match_info["slug"])
    provider.replies.extend(replies)
    return _json(provider.as_dict())


async def provider_last_request(request: web.Request) -> web.Response:
    """What the caller really sent upstream (a test's view of the wire): the JSON body of the
    provider's last chat request, or 404 before the first."""
    provider = request.app[REGISTRY_KEY].get(request.match_info["slug"])
    if provider.last_request is None:
        return _json({"error": "no chat request yet"}, 404)
    return _json({"body": provider.last_request})


async def reset(request: web.Request) -> web.Response:
    request.app[REGISTRY_KEY].reset()
    return _json({"status": "reset"})


async def stats(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY_KEY]
    return _json({slug: p.stats.as_dict() for slug, p in registry.providers.items()})

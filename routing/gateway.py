"""The gateway's request path, between the API views and the router: resolve the model, check
the request against the model and the key, admit it under the rate limits, route it, and shape
the answer (our generation id, the served model, the provider, usage with its cost).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from accounts.selectors import AuthenticatedKey
from billing import services as billing
from routing import events, policy, router, selectors
from routing.errors import GatewayError, bad_request
from routing.health import health_book
from routing.pricing import cost_nanousd, nano_to_usd, worst_case_nanousd
from routing.providers.base import ErrorKind, UpstreamError, Usage
from routing.ratelimit import Limit, RateLimitUnavailable, get_rate_limiter, rate_limit_headers
from routing.snapshot import CatalogSnapshot, EndpointSnap, ModelSnap, catalog
from routing.tokens import estimate_embedding_tokens, estimate_prompt_tokens
from routing.validation import ChatRequest

# What an upstream failure that ends the call means to our client.
_STATUS_FOR = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.CONTEXT_LENGTH: 400,
    ErrorKind.CONTENT_FILTER: 400,
}


def new_generation_id() -> str:
    return f"gen-{uuid.uuid4().hex}"


def usd_fragment(nano: int) -> orjson.Fragment:
    """An exact decimal JSON number (never a float) for a cost in USD."""
    return orjson.Fragment(format(nano_to_usd(nano), "f"))


def fragment_nanousd(cost: orjson.Fragment) -> int:
    """A cost written by usd_fragment, read back exactly (never through a float)."""
    return int(Decimal(orjson.dumps(cost).decode()) * 1_000_000_000)


def usage_json(usage: Usage, cost_nano: int) -> dict[str, Any]:
    data = usage.to_openai()
    data["cost"] = usd_fragment(cost_nano)
    return data


@dataclass(slots=True)
class Admission:
    key: AuthenticatedKey
    models: list[ModelSnap]
    candidates: list[EndpointSnap]
    prompt_tokens: int
    max_tokens: int
    headers: dict[str, str]
    generation_id: str = field(default_factory=new_generation_id)
    received_at: float = field(default_factory=time.time)
    held_nanousd: int = 0
    settled: bool = False
    # Batches run at a discount: the settled cost is the list price less this share.
    discount_percent: int = 0
    operation: str = "chat"  # or "embeddings" (the GenAI operation name in traces)
    # The caller's body, only for an organization that keeps bodies in its request logs.
    request_body: Any = None

    @property
    def keeps_bodies(self) -> bool:
        return self.request_body is not None

    def charge(self, cost: int) -> int:
        return cost * (100 - self.discount_percent) // 100 if self.discount_percent else cost


def resolve_models(snapshot: CatalogSnapshot, names: tuple[str, ...], *, embeddings: bool) -> list:
    models = []
    for name in names:
        model = snapshot.resolve(name)
        if model is None:
            suggestions = snapshot.suggest(name)
            raise GatewayError(
                404,
                f"The model '{name}' does not exist. Did you mean: {', '.join(suggestions)}?",
                code="model_not_found",
                param="model",
                metadata={"suggestions": suggestions},
            )
        if model.is_embedding != embeddings:
            kind = "an embeddings" if model.is_embedding else "a chat"
            raise bad_request(
                f"'{model.id}' is {kind} model; use "
                f"{'/v1/embeddings' if model.is_embedding else '/v1/chat/completions'}.",
                param="model",
                code="wrong_endpoint",
            )
        models.append(model)
    return models


def check_key_allows(key: AuthenticatedKey, models: list[ModelSnap]) -> None:
    for model in models:
        if not key.allows_model(model.id) and not any(key.allows_model(a) for a in model.aliases):
            raise GatewayError(
                403,
                f"This API key may not use '{model.id}'. Allowed: {', '.join(key.allowed_models)}.",
                code="model_not_allowed",
                param="model",
            )


async def admit(key: AuthenticatedKey, *, tokens: int) -> dict[str, str]:
    limits = []
    if key.rpm_limit or key.tpm_limit:
        limits.append(Limit("key", str(key.key_id), key.rpm_limit, key.tpm_limit))
    if key.org_rpm_limit or key.org_tpm_limit:
        limits.append(Limit("org", str(key.organization_id), key.org_rpm_limit, key.org_tpm_limit))
    if not limits:
        return {}
    try:
        decision = await get_rate_limiter().acquire(limits, tokens=tokens)
    except RateLimitUnavailable:
        # Fail closed: without the shared counters we can't know the caller is within limits.
        raise GatewayError(
            503,
            "Rate limiting is temporarily unavailable; please retry shortly.",
            code="rate_limiter_unavailable",
            headers={"retry-after": "1"},
        ) from None
    headers = rate_limit_headers(decision)
    if not decision.allowed:
        events.request_refused("rate_limit", str(decision.refused_by))
        if decision.too_large:
            raise GatewayError(
                429,
                f"This request alone ({tokens} tokens) exceeds your {decision.refused_by} limit.",
                code="rate_limit_exceeded",
                headers=headers,
            )
        raise GatewayError(
            429,
            f"Rate limit reached ({decision.refused_by}). Retry after "
            f"{headers.get('retry-after', '1')} s.",
            code="rate_limit_exceeded",
            headers=headers,
        )
    return headers


async def admit_chat(
    key: AuthenticatedKey, request: ChatRequest, *, generation_id: str | None = None
) -> Admission:
    """Check, rate-limit and hold a chat request. `generation_id` is given by callers that
    may run the same work twice (a batch item re-run after its worker died): the hold,
    its settlement and the ledger entry all key on it, so the work is billed once."""
    snapshot = await catalog.aget()
    models = resolve_models(snapshot, request.model_names, embeddings=False)
    check_key_allows(key, models)
    primary = models[0]
    if request.max_tokens is not None and request.max_tokens > primary.max_output_tokens:
        raise bad_request(
            f"max_tokens is {request.max_tokens}, but '{primary.id}' writes at most "
            f"{primary.max_output_tokens} tokens.",
            param="max_tokens",
            code="max_tokens_exceeded",
        )
    if request.has_images and "image" not in primary.input_modalities:
        raise bad_request(f"'{primary.id}' does not accept images.", param="messages")
    if request.has_tools and not primary.supports_tools:
        raise bad_request(f"'{primary.id}' does not support tools.", param="tools")
    prompt_tokens = estimate_prompt_tokens(request.body)
    max_tokens = request.max_tokens or primary.max_output_tokens
    needed = prompt_tokens + (request.max_tokens or 1)
    if needed > primary.context_window:
        raise bad_request(
            f"This request needs about {needed} tokens (prompt ~{prompt_tokens}"
            f"{f' + max_tokens {request.max_tokens}' if request.max_tokens else ''}), more than "
            f"the {primary.context_window}-token context window of '{primary.id}'.",
            param="messages",
            code="context_length_exceeded",
        )
    # The organization's default routing fills in what the request leaves unsaid.
    defaults = await selectors.routing_policy_for(key.organization_id)
    prefs, strategy = policy.merge(defaults, request.prefs, request.strategy)
    candidates = router.plan(
        models, prefs, strategy=strategy, needed_context=needed, health=health_book
    )
    if not candidates:
        raise GatewayError(
            404,
            "No provider of this model matches your provider preferences "
            "(only / ignore / max_price / context).",
            code="no_endpoint",
            param="provider",
        )
    headers = await admit(key, tokens=prompt_tokens + max_tokens)
    admission = Admission(
        key=key,
        models=models,
        candidates=candidates,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        headers=headers,
    )
    if events.keeps_bodies(str(key.organization_id)):
        admission.request_body = request.body
    if generation_id:
        admission.generation_id = generation_id
    await hold(admission)
    return admission


async def hold(admission: Admission) -> None:
    """Reserve the worst case (on the priciest endpoint it may fall back to) against every
    spend limit and the prepaid balance, before any provider is called."""
    amount = max(
        worst_case_nanousd(
            e, prompt_tokens=admission.prompt_tokens, max_tokens=admission.max_tokens
        )
        for e in admission.candidates
    )
    key = admission.key
    try:
        result = await billing.hold_place(
            hold_id=admission.generation_id,
            organization_id=key.organization_id,
            key_id=key.key_id,
            key_limit_nanousd=key.spend_limit_nanousd,
            key_period=key.spend_limit_period,
            amount_nanousd=amount,
        )
    except billing.HoldUnavailable:
        # Fail closed: without the shared counters no request may spend.
        raise GatewayError(
            503,
            "Spend control is temporarily unavailable; please retry shortly.",
            code="billing_unavailable",
            headers={"retry-after": "1", **admission.headers},
        ) from None
    if not result.allowed:
        events.request_refused("spend", str(result.refused_by))
        code = (
            "insufficient_quota"
            if result.refused_by == "insufficient_quota"
            else "spend_limit_exceeded"
        )
        raise GatewayError(
            402,
            result.message or "This request doesn't fit your credit or spend limits.",
            code=code,
            headers=admission.headers,
            metadata={
                "limit": result.refused_by,
                "requested_nanousd": amount,
                **({"ended_as": result.ended_as} if result.ended_as else {}),
            },
        )
    admission.held_nanousd = amount


def record_failure(admission: Admission, error: Exception, *, streamed: bool) -> None:
    """A request that ended with no answer still gets its log row (errors and uptime count
    it), at zero usage and zero cost."""
    attempts = getattr(error, "attempts", None) or []
    if not attempts:
        return  # no provider was tried: nothing happened upstream worth a trace
    if isinstance(error, router.AllAttemptsFailed) and error.last is not None:
        kind = (
            "upstream_rate_limited"
            if error.last.kind == ErrorKind.RATE_LIMITED
            else str(error.last.kind)
        )
    elif isinstance(error, UpstreamError):
        kind = str(error.kind)
    else:
        kind = "upstream_error"
    events.generation_finished(
        admission, attempts[-1].endpoint, Usage(), 0, attempts, streamed=streamed, error=kind
    )


def reached(error: Exception) -> bool:
    """Did a provider answer at all? Then the generation gets its (zero) usage entry."""
    if isinstance(error, router.AllAttemptsFailed):
        return any(a.http_status is not None for a in error.attempts)
    return isinstance(error, UpstreamError) and error.status is not None


async def settle(admission: Admission, cost: int, *, reached_provider: bool = True) -> None:
    """The hold becomes the real cost, exactly once; nothing is billed when no provider was
    reached."""
    if admission.settled:
        return
    admission.settled = True
    if not admission.held_nanousd:
        return
    if not reached_provider:
        await billing.hold_release(hold_id=admission.generation_id)
        return
    await billing.hold_settle(
        hold_id=admission.generation_id,
        actual_nanousd=cost,
        organization_id=admission.key.organization_id,
        key_id=admission.key.key_id,
    )


def upstream_body(request: ChatRequest, admission: Admission) -> dict[str, Any]:
    """What adapters get: the client's body without our routing fields."""
    body = dict(request.body)
    for name in ("models", "provider", "route", "hedge_after_ms", "transforms", "usage"):
        body.pop(name, None)
    if not admission.models[0].reasoning_levels:
        body.pop("reasoning_effort", None)
    return body


def failed(error: Exception, admission: Admission) -> GatewayError:
    if isinstance(error, router.AllAttemptsFailed):
        # What the caller needs to see of each attempt (the log has the timings).
        shown = ("provider", "model", "outcome", "status", "message", "duration_ms")
        attempts = [{k: v for k, v in a.as_dict().items() if k in shown} for a in error.attempts]
        last = error.last
        if last is not None and last.kind == ErrorKind.RATE_LIMITED and len(error.attempts) >= 1:
            retry = int(last.retry_after or 1)
            return GatewayError(
                429,
                "Every provider of this model is rate limiting right now. Retry shortly.",
                code="upstream_rate_limited",
                headers={"retry-after": str(max(retry, 1)), **admission.headers},
                metadata={"attempts": attempts},
            )
        return GatewayError(
            502,
            f"Every provider failed ({len(attempts)} attempts); nothing was billed.",
            code="upstream_error",
            headers=admission.headers,
            metadata={"attempts": attempts},
        )
    if isinstance(error, UpstreamError):
        status = _STATUS_FOR.get(error.kind, 502)
        code = {
            ErrorKind.CONTEXT_LENGTH: "context_length_exceeded",
            ErrorKind.CONTENT_FILTER: "content_filter",
        }.get(error.kind, "invalid_request" if status == 400 else "upstream_error")
        return GatewayError(
            status,
            f"The provider refused the request: {error.message}",
            code=code,
            headers=admission.headers,
        )
    raise error


def shape_completion(
    admission: Admission, endpoint: EndpointSnap, body: dict[str, Any], usage: Usage
) -> tuple[dict[str, Any], int]:
    cost = admission.charge(cost_nanousd(endpoint, usage))
    body["id"] = admission.generation_id
    body["object"] = "chat.completion"
    body["created"] = int(admission.received_at)
    body["model"] = endpoint.model_id
    body["provider"] = endpoint.provider
    body["usage"] = usage_json(usage, cost)
    return body, cost


async def complete(admission: Admission, request: ChatRequest) -> dict[str, Any]:
    body = upstream_body(request, admission)

    async def attempt(endpoint: EndpointSnap):
        started = time.perf_counter()
        result = await router.call_chat_once(endpoint, body)
        health_book.record_success(endpoint.key, ttft_ms=(time.perf_counter() - started) * 1000)
        return result

    try:
        (answer, usage), endpoint, attempts = await router.run(
            admission.candidates, attempt, hedge_after_ms=request.hedge_after_ms
        )
    except (router.AllAttemptsFailed, UpstreamError) as error:
        # A failed request that no provider billed costs nothing.
        await settle(admission, 0, reached_provider=reached(error))
        record_failure(admission, error, streamed=False)
        raise failed(error, admission) from None
    except BaseException:
        await settle(admission, 0, reached_provider=False)
        raise
    shaped, cost = shape_completion(admission, endpoint, answer, usage)
    await settle(admission, cost)
    events.generation_finished(
        admission,
        endpoint,
        usage,
        cost,
        attempts,
        streamed=False,
        response_body=shaped if admission.keeps_bodies else None,
    )
    return shaped


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def open_stream(admission: Admission, request: ChatRequest) -> router.StreamResult:
    """Routes until one provider's stream has its first chunk; errors before that are
    ordinary (fallback, then an HTTP error answer)."""
    body = upstream_body(request, admission)

    async def attempt(endpoint: EndpointSnap):
        result = await router.open_stream_once(endpoint, body)
        health_book.record_success(endpoint.key, ttft_ms=result.ttft_ms)
        return result

    try:
        result, _, attempts = await router.run(
            admission.candidates, attempt, hedge_after_ms=request.hedge_after_ms
        )
    except (router.AllAttemptsFailed, UpstreamError) as error:
        await settle(admission, 0, reached_provider=reached(error))
        record_failure(admission, error, streamed=True)
        raise failed(error, admission) from None
    except BaseException:
        await settle(admission, 0, reached_provider=False)
        raise
    for record in attempts:
        if record.outcome == "ok":
            record.ttft_ms = result.ttft_ms  # the winner's first chunk, for the waterfall
    result.attempts = attempts
    return result


async def stream_events(
    admission: Admission, request: ChatRequest, result: router.StreamResult
) -> AsyncIterator[bytes]:
    """The SSE body. After the first byte there is no fallback: a failure ends the stream with
    an error chunk (finish_reason "error"), never a silent truncation."""
    endpoint = result.endpoint
    tracker = router.StreamTracker(keep_text=admission.keeps_bodies)
    held: list[dict[str, Any]] = []  # finish chunks wait for the usage to attach to
    base = {
        "id": admission.generation_id,
        "object": "chat.completion.chunk",
        "created": int(admission.received_at),
        "model": endpoint.model_id,
        "provider": endpoint.provider,
    }
    failure: UpstreamError | None = None
    finished = False

    def frame(chunk: dict[str, Any]) -> dict[str, Any] | None:
        chunk.pop("usage", None)
        if not chunk.get("choices"):
            return None  # the provider's own usage chunk: we send ours at the end
        tracker.observe(chunk)
        return {**base, **chunk}

    try:
        for chunk in result.first:
            framed = frame(chunk)
            if framed is None:
                continue
            if any(c.get("finish_reason") for c in framed["choices"]):
                held.append(framed)
            else:
                yield _sse(framed)
        try:
            async for chunks in result.rest():
                for chunk in chunks:
                    framed = frame(chunk)
                    if framed is None:
                        continue
                    if any(c.get("finish_reason") for c in framed["choices"]):
                        held.append(framed)
                    else:
                        for pending in held:
                            yield _sse(pending)
                        held.clear()
                        yield _sse(framed)
        except UpstreamError as error:
            failure = error
        usage = result.decoder.usage
        if usage is None or failure is not None:
            usage = _delivered_usage(admission, tracker, usage)
        cost = cost_nanousd(endpoint, usage)
        if failure is not None:
            for pending in held:
                yield _sse(pending)
            yield _sse(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
                    "error": {
                        "message": f"The provider's stream failed: {failure.message}",
                        "type": "upstream_error",
                        "code": str(failure.kind),
                        "param": None,
                    },
                    "usage": usage_json(usage, cost),
                }
            )
        else:
            if request.include_usage:
                for pending in held:
                    yield _sse(pending)
                yield _sse({**base, "choices": [], "usage": usage_json(usage, cost)})
            elif held:
                for pending in held[:-1]:
                    yield _sse(pending)
                yield _sse({**held[-1], "usage": usage_json(usage, cost)})
            else:
                yield _sse(
                    {
                        **base,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        "usage": usage_json(usage, cost),
                    }
                )
        yield b"data: [DONE]\n\n"
        finished = True
        if failure is not None:
            health_book.record_failure(endpoint.key)
        await settle(admission, cost)
        events.generation_finished(
            admission,
            endpoint,
            usage,
            cost,
            result.attempts,
            streamed=True,
            error=str(failure.kind) if failure else None,
            response_body=tracker.text,
        )
    finally:
        await result.aclose()
        if not finished:
            # The client went away mid-stream: bill the prompt and what was delivered.
            usage = _delivered_usage(admission, tracker, result.decoder.usage)
            cost = cost_nanousd(endpoint, usage)
            # Shielded: the request is being cancelled, but the money must still settle.
            await asyncio.shield(settle(admission, cost))
            events.generation_finished(
                admission,
                endpoint,
                usage,
                cost,
                result.attempts,
                streamed=True,
                error="client_disconnected",
                response_body=tracker.text,
            )


def _delivered_usage(admission: Admission, tracker, reported: Usage | None) -> Usage:
    """Usage for a stream that didn't finish: what the provider reported so far, but never
    less than the estimated prompt and the tokens actually delivered."""
    prompt = max(reported.prompt_tokens if reported else 0, 0) or admission.prompt_tokens
    completion = max(reported.completion_tokens if reported else 0, tracker.delivered_tokens)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=reported.cached_tokens if reported else 0,
        reasoning_tokens=reported.reasoning_tokens if reported else 0,
    )


# Embeddings ----------------------------------------------------------------------------------


async def embed(
    key: AuthenticatedKey,
    model_name: str,
    inputs: list,
    body: dict,
    *,
    discount_percent: int = 0,
    generation_id: str | None = None,
) -> tuple:
    snapshot = await catalog.aget()
    models = resolve_models(snapshot, (model_name,), embeddings=True)
    check_key_allows(key, models)
    tokens = estimate_embedding_tokens(inputs)
    if tokens > models[0].context_window * len(inputs):
        raise bad_request("An input is longer than the model's context window.", param="input")
    defaults = await selectors.routing_policy_for(key.organization_id)
    prefs, strategy = policy.merge(defaults, router.Preferences(), None)
    candidates = router.plan(models, prefs, strategy=strategy, health=health_book)
    headers = await admit(key, tokens=tokens)
    admission = Admission(
        key=key,
        models=models,
        candidates=candidates,
        prompt_tokens=tokens,
        max_tokens=0,
        headers=headers,
        discount_percent=discount_percent,
        operation="embeddings",
    )
    if events.keeps_bodies(str(key.organization_id)):
        admission.request_body = body
    if generation_id:
        admission.generation_id = generation_id
    await hold(admission)
    upstream = {k: v for k, v in body.items() if k not in ("provider", "models")}
    upstream["input"] = inputs if not isinstance(body.get("input"), str) else body["input"]

    async def attempt(endpoint: EndpointSnap):
        result = await router.call_embeddings_once(endpoint, upstream)
        health_book.record_success(endpoint.key)
        return result

    try:
        (answer, usage), endpoint, attempts = await router.run(candidates, attempt)
    except (router.AllAttemptsFailed, UpstreamError) as error:
        await settle(admission, 0, reached_provider=reached(error))
        raise failed(error, admission) from None
    except BaseException:
        await settle(admission, 0, reached_provider=False)
        raise
    cost = admission.charge(cost_nanousd(endpoint, usage))
    await settle(admission, cost)
    answer["object"] = "list"
    answer["id"] = admission.generation_id
    answer["model"] = endpoint.model_id
    answer["provider"] = endpoint.provider
    answer["usage"] = {
        "prompt_tokens": usage.prompt_tokens,
        "total_tokens": usage.prompt_tokens,
        "cost": usd_fragment(cost),
    }
    events.generation_finished(admission, endpoint, usage, cost, attempts, streamed=False)
    return answer, headers


def price_usd(nano_per_million: int) -> str:
    return format((Decimal(nano_per_million) / Decimal(1_000_000_000)).normalize(), "f")

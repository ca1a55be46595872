"""The gateway's request path, between the API views and the router: resolve the model, check
the request against the model and the key, admit it under the rate limits, route it, and shape
the answer (our generation id, the served model, the provider, usage with its cost).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from django.conf import settings

from accounts.selectors import AuthenticatedKey
from billing import selectors as billing_selectors
from billing import services as billing
from routing import events, imagefetch, policy, router, selectors
from routing.errors import GatewayError, bad_request, upstream_failure, upstream_message
from routing.health import health_book
from routing.pricing import cost_nanousd, hold_ttl_seconds, nano_to_usd, worst_case_nanousd
from routing.providers.base import ErrorKind, UpstreamError, Usage
from routing.providers.registry import adapter_for
from routing.ratelimit import Limit, RateLimitUnavailable, get_rate_limiter, rate_limit_headers
from routing.snapshot import CatalogSnapshot, EndpointSnap, ModelSnap, catalog
from routing.tokens import PromptEstimate, estimate_embedding_tokens, estimate_prompt, text_tokens
from routing.validation import ChatRequest

logger = logging.getLogger(__name__)

# Sent when a caller without max_tokens got a lower output cap than the model's maximum,
# because the room left on their credit or limits could not hold the maximum.
LOWERED_HEADER = "x-llmapi-max-tokens-lowered"

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
    # Per endpoint (its key): the output cap sent upstream, which is what its hold covers.
    caps: dict[str, int] = field(default_factory=dict)
    estimate: PromptEstimate | None = None
    hedge_after_ms: float | None = None
    # What attempts that reached a provider without a usable answer cost (hedged losers,
    # timeouts after sending, calls abandoned by the client): billed with the generation.
    attempts_cost: int = 0
    # The client went away: no new attempt starts; the one running finishes and is billed.
    abandoned: bool = False
    generation_id: str = field(default_factory=new_generation_id)
    received_at: float = field(default_factory=time.time)
    held_nanousd: int = 0
    settled: bool = False
    # Batches run at a discount: the settled cost is the list price less this share.
    discount_percent: int = 0
    # Choices asked for (n): each writes up to the output cap, and all are billed.
    choices: int = 1
    operation: str = "chat"  # or "embeddings" (the GenAI operation name in traces)
    # The caller's body, only for an organization that keeps bodies in its request logs.
    request_body: Any = None

    @property
    def keeps_bodies(self) -> bool:
        return self.request_body is not None

    def charge(self, cost: int) -> int:
        return cost * (100 - self.discount_percent) // 100 if self.discount_percent else cost

    def prompt_for(self, endpoint: EndpointSnap) -> int:
        """The prompt's estimate on this endpoint (media by size, at most its context)."""
        if self.estimate is None:
            return self.prompt_tokens
        return self.estimate.for_window(endpoint.context_window)

    def worst_case(self, endpoint: EndpointSnap) -> int:
        return worst_case_nanousd(
            endpoint,
            prompt_tokens=self.prompt_for(endpoint),
            max_tokens=self.caps.get(endpoint.key, self.max_tokens) * self.choices,
        )

    def unanswered_cost(self, endpoint: EndpointSnap) -> int:
        """An attempt that reached the provider but brought no usage back: its prompt."""
        return self.charge(cost_nanousd(endpoint, Usage(prompt_tokens=self.prompt_for(endpoint))))


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


def _lower(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


async def admit(key: AuthenticatedKey, *, tokens: int) -> dict[str, str]:
    """RPM/TPM: the key's own limits, and the organization's: its plan's (or staff's
    override), narrowed by any it set itself. One limiter round trip for all of them."""
    limits = []
    if key.rpm_limit or key.tpm_limit:
        limits.append(Limit("key", str(key.key_id), key.rpm_limit, key.tpm_limit))
    # Warm in this process's memory (the hold reads it too): no I/O on the hot path.
    plan = await billing_selectors.billing_snapshot(organization_id=key.organization_id)
    org_rpm = _lower(key.org_rpm_limit or None, plan.rpm_limit)
    org_tpm = _lower(key.org_tpm_limit or None, plan.tpm_limit)
    if org_rpm or org_tpm:
        limits.append(Limit("org", str(key.organization_id), org_rpm, org_tpm))
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
    key: AuthenticatedKey,
    request: ChatRequest,
    *,
    generation_id: str | None = None,
    rate_limited: bool = True,
) -> Admission:
    """Check, rate-limit and hold a chat request. `generation_id` is given by callers that
    may run the same work twice (a batch item re-run after its worker died): the hold,
    its settlement and the ledger entry all key on it, so the work is billed once.
    `rate_limited=False` (batch items) skips the RPM/TPM limits, sized for interactive
    traffic: batches have caps of their own on calls in flight."""
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
    estimate = estimate_prompt(request.body)
    prompt_tokens = estimate.typical
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
            "No provider of this model matches your provider preferences and your "
            "organization's routing policy (only / ignore / max_price / context).",
            code="no_endpoint",
            param="provider",
        )
    candidates = able_candidates(candidates, request)
    admission = Admission(
        key=key,
        models=models,
        candidates=candidates,
        prompt_tokens=estimate.tokens,
        max_tokens=0,
        headers={},
        estimate=estimate,
        choices=request.n,
    )
    output_caps(admission, request.body, request.max_tokens)
    if rate_limited:
        admission.headers = await admit(
            key,
            tokens=max(admission.prompt_for(e) for e in candidates)
            + admission.max_tokens * request.n,
        )
    if request.hedge_after_ms is not None:
        # The plan sets the earliest hedge: each hedged attempt is billed, so "0 ms" would
        # double every prompt's cost.
        snapshot = await billing_selectors.billing_snapshot(organization_id=key.organization_id)
        admission.hedge_after_ms = max(
            float(request.hedge_after_ms), float(snapshot.min_hedge_after_ms)
        )
    if events.keeps_bodies(str(key.organization_id)):
        admission.request_body = request.body
    if generation_id:
        admission.generation_id = generation_id
    await hold(admission, body=request.body, lowerable=request.max_tokens is None)
    return admission


def able_candidates(candidates: list[EndpointSnap], request: ChatRequest) -> list[EndpointSnap]:
    """The endpoints whose wire can do what the request asks (log probabilities, n choices
    in one call): the others are skipped, and a request none can serve is a clear 400."""
    if request.n == 1 and not request.logprobs:
        return candidates
    able = [
        e
        for e in candidates
        if (not request.logprobs or adapter_for(e.wire).logprobs)
        and request.n <= adapter_for(e.wire).max_choices
    ]
    if able:
        return able
    param, what = ("logprobs", "log probabilities") if request.logprobs else ("n", f"n={request.n}")
    if request.logprobs and request.n > 1 and all(adapter_for(e.wire).logprobs for e in candidates):
        param, what = "n", f"n={request.n}"
    providers = ", ".join(sorted({e.provider for e in candidates}))
    raise bad_request(
        f"No endpoint of this request's models offers {what} ({providers} can't). Leave "
        f"'{param}' out, or pick a model served by an OpenAI-compatible or Gemini endpoint.",
        param=param,
        code="unsupported_parameter",
    )


def output_caps(admission: Admission, body: dict[str, Any], requested: int | None) -> None:
    """Each candidate's output cap: the caller's max_tokens (else the endpoint's maximum),
    within the endpoint's maximum, plus whatever its adapter adds (a thinking budget)."""
    caps = {}
    for endpoint in admission.candidates:
        wanted = requested if requested is not None else endpoint.max_output_tokens
        caps[endpoint.key] = adapter_for(endpoint.wire).output_cap(
            body, requested=wanted, endpoint_max=endpoint.max_output_tokens
        )
    admission.caps = caps
    admission.max_tokens = max(caps.values(), default=0)


def hold_amount(admission: Admission) -> int:
    """The worst case over the candidates the request may fall back to; with hedging, two
    attempts run at once and both are billed, so the two worst together."""
    amounts = sorted((admission.worst_case(e) for e in admission.candidates), reverse=True)
    if not amounts:
        return 0
    held = amounts[0]
    if admission.hedge_after_ms is not None and len(amounts) > 1:
        held += amounts[1]
    if settings.ROUTING_MAX_ATTEMPTS > 1 and admission.operation == "chat":
        # A fallback after a timeout: the timed-out attempt's prompt is billed too.
        held += max(admission.unanswered_cost(e) for e in admission.candidates)
    return held


def affordable_output(admission: Admission, body: dict[str, Any], room: int) -> int:
    """The largest output cap (the same for every candidate) whose hold fits in `room`."""
    saved = admission.caps
    low, high = 0, max(e.max_output_tokens for e in admission.candidates)
    while low < high:
        middle = (low + high + 1) // 2
        output_caps(admission, body, middle)
        if hold_amount(admission) <= room:
            low = middle
        else:
            high = middle - 1
    admission.caps = saved
    admission.max_tokens = max(saved.values(), default=0)
    return low


async def hold(
    admission: Admission, *, body: dict[str, Any] | None = None, lowerable: bool = False
) -> None:
    """Reserve the worst case (on the priciest endpoint it may fall back to) against every
    spend limit and the prepaid balance, before any provider is called. A caller who set no
    max_tokens and whose room can't hold the model's maximum gets a lower cap (said in a
    header), down to a useful minimum."""
    amount = hold_amount(admission)
    result = await _hold_place(admission, amount)
    if not result.allowed and lowerable and body is not None and result.refused_by in REFUSALS:
        rooms = (
            result.key_remaining_nanousd,
            result.org_remaining_nanousd,
            result.balance_remaining_nanousd,
        )
        room = min((r for r in rooms if r is not None), default=0)
        cap = affordable_output(admission, body, room)
        if cap >= settings.ROUTING_MIN_OUTPUT_TOKENS:
            output_caps(admission, body, cap)
            amount = hold_amount(admission)
            result = await _hold_place(admission, amount)
            if result.allowed:
                admission.headers[LOWERED_HEADER] = str(cap)
    if not result.allowed:
        raise _refusal(admission, result, amount)
    admission.held_nanousd = amount


# Refusals of a hold that a lower output cap can get past.
REFUSALS = ("insufficient_quota", "key_spend_limit", "org_spend_limit")


async def _hold_place(admission: Admission, amount: int) -> billing.HoldResult:
    key = admission.key
    try:
        return await billing.hold_place(
            hold_id=admission.generation_id,
            organization_id=key.organization_id,
            key_id=key.key_id,
            key_limit_nanousd=key.spend_limit_nanousd,
            key_period=key.spend_limit_period,
            amount_nanousd=amount,
            ttl_seconds=hold_ttl_seconds(admission.candidates, max_tokens=admission.max_tokens),
        )
    except billing.HoldUnavailable:
        # Fail closed: without the shared counters no request may spend.
        raise GatewayError(
            503,
            "Spend control is temporarily unavailable; please retry shortly.",
            code="billing_unavailable",
            headers={"retry-after": "1", **admission.headers},
        ) from None


def _refusal(admission: Admission, result: billing.HoldResult, amount: int) -> GatewayError:
    events.request_refused("spend", str(result.refused_by))
    if result.refused_by == "account_suspended":  # a payment dispute is open
        return GatewayError(
            403, result.message, code="account_suspended", headers=admission.headers
        )
    if result.refused_by == "too_many_in_flight":
        return GatewayError(
            429,
            result.message,
            code="too_many_requests_in_flight",
            headers={"retry-after": "1", **admission.headers},
        )
    code = (
        "insufficient_quota"
        if result.refused_by == "insufficient_quota"
        else "spend_limit_exceeded"
    )
    return GatewayError(
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


def record_failure(
    admission: Admission,
    error: Exception,
    *,
    streamed: bool,
    attempts: list[router.Attempt] | None = None,
) -> None:
    """A request that ended with no answer still gets its log row (errors and uptime count
    it), at zero usage, and at the cost of the attempts that reached a provider."""
    attempts = attempts or getattr(error, "attempts", None) or []
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
    elif isinstance(error, router.ClientGone | asyncio.CancelledError):
        kind = "client_disconnected"
    else:
        kind = "upstream_error"
    events.generation_finished(
        admission,
        attempts[-1].endpoint,
        Usage(),
        admission.attempts_cost,
        attempts,
        streamed=streamed,
        error=kind,
    )


def reached(error: Exception) -> bool:
    """Did a provider answer at all? Then the generation gets its usage entry (at zero, or
    at what its unanswered attempts cost)."""
    attempts = getattr(error, "attempts", None) or ()
    if isinstance(error, router.AllAttemptsFailed):
        return any(a.http_status is not None or a.billable for a in attempts)
    return isinstance(error, UpstreamError) and (error.status is not None or error.billable)


def bill_attempts(admission: Admission, attempts: list[router.Attempt]) -> int:
    """What the attempts that reached a provider without a usable answer cost (each at its
    own endpoint's price for the prompt): hedged losers, timeouts after sending, answers that
    broke off, and, when the client went away, the call that was running."""
    total = 0
    for record in attempts:
        if record.outcome == "ok":
            continue
        if record.outcome == "pending" and admission.abandoned:
            record.billable = True
        if record.billable:
            record.cost_nanousd = admission.unanswered_cost(record.endpoint)
            total += record.cost_nanousd
    admission.attempts_cost = total
    return total


def _check_room(admission: Admission, attempts: list[router.Attempt], endpoint) -> None:
    """Before an attempt starts: the client is still there, and what the earlier attempts
    cost plus this one's worst case is still inside the hold."""
    if admission.abandoned:
        raise router.ClientGone()
    spent = sum(admission.unanswered_cost(r.endpoint) for r in attempts if r.billable)
    if admission.held_nanousd and spent + admission.worst_case(endpoint) > admission.held_nanousd:
        raise UpstreamError(
            ErrorKind.HOLD_SPENT,
            "the attempts so far used what this request was held for; no further attempt",
        )


async def settle(admission: Admission, cost: int, *, reached_provider: bool = True) -> None:
    """The hold becomes the real cost, exactly once; nothing is billed when no provider was
    reached."""
    if admission.settled:
        return
    admission.settled = True
    if not admission.held_nanousd:
        return
    # A side effect of a request that may already be answered: it never fails the request
    # (billing queues the usage for the ledger whatever happens to Redis).
    try:
        if not reached_provider:
            await billing.hold_release(hold_id=admission.generation_id)
            return
        await billing.hold_settle(
            hold_id=admission.generation_id,
            actual_nanousd=cost,
            organization_id=admission.key.organization_id,
            key_id=admission.key.key_id,
        )
    except Exception:
        logger.exception("could not settle %s", admission.generation_id)


# The caller's names for the output cap; the gateway sends its own (what was held).
_CAP_FIELDS = ("max_tokens", "max_completion_tokens")


def upstream_body(request: ChatRequest, admission: Admission) -> dict[str, Any]:
    """What adapters get: the client's body without our routing fields."""
    body = dict(request.body)
    for name in ("models", "provider", "route", "hedge_after_ms", "transforms", "usage"):
        body.pop(name, None)
    if not admission.models[0].reasoning_levels:
        body.pop("reasoning_effort", None)
    return body


def attempt_body(body: dict[str, Any], admission: Admission, endpoint) -> dict[str, Any]:
    """The body for one endpoint: its explicit output cap, equal to what was held for it."""
    cap = admission.caps.get(endpoint.key)
    if cap is None:
        return body
    name = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
    sent = {k: v for k, v in body.items() if k not in _CAP_FIELDS}
    sent[name] = cap
    return sent


def _shown(attempts: list[router.Attempt]) -> list[dict[str, Any]]:
    """What the caller needs to see of each attempt (the log has the timings, and what the
    provider said: callers get our words for it)."""
    shown = ("provider", "model", "outcome", "status", "duration_ms")
    out = []
    for a in attempts:
        item = {k: v for k, v in a.as_dict().items() if k in shown}
        item["message"] = (
            ""
            if a.outcome in ("ok", "cancelled", "pending")
            else upstream_failure(a.outcome, a.http_status)
        )
        out.append(item)
    return out


def failed(error: Exception, admission: Admission) -> GatewayError:
    if isinstance(error, router.AllAttemptsFailed):
        attempts = _shown(error.attempts)
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
            f"Every provider failed ({len(attempts)} attempts); "
            + (
                "attempts that reached a provider without an answer cost "
                f"${format(nano_to_usd(admission.attempts_cost), 'f')}."
                if admission.attempts_cost
                else "nothing was billed."
            ),
            code="upstream_error",
            headers=admission.headers,
            metadata={"attempts": attempts},
        )
    if isinstance(error, UpstreamError) and error.kind == ErrorKind.HOLD_SPENT:
        return GatewayError(
            502,
            "The providers failed, and the attempts they were sent cost what this request was "
            "held for, so no further attempt was made.",
            code="upstream_error",
            headers=admission.headers,
            metadata={"attempts": _shown(getattr(error, "attempts", None) or [])},
        )
    if isinstance(error, UpstreamError):
        status = _STATUS_FOR.get(error.kind, 502)
        code = {
            ErrorKind.CONTEXT_LENGTH: "context_length_exceeded",
            ErrorKind.CONTENT_FILTER: "content_filter",
        }.get(error.kind, "invalid_request" if status == 400 else "upstream_error")
        return GatewayError(
            status,
            upstream_message(error)
            if error.from_provider
            else f"The provider refused the request: {error.message}",
            code=code,
            headers=admission.headers,
        )
    raise error


def shape_completion(
    admission: Admission,
    endpoint: EndpointSnap,
    body: dict[str, Any],
    usage: Usage,
    *,
    extra: int = 0,
) -> tuple[dict[str, Any], int]:
    """`extra`: what the request's unanswered attempts cost, billed with it."""
    cost = admission.charge(cost_nanousd(endpoint, usage)) + extra
    body["id"] = admission.generation_id
    body["object"] = "chat.completion"
    body["created"] = int(admission.received_at)
    body["model"] = endpoint.model_id
    body["provider"] = endpoint.provider
    if endpoint.simulated:  # played by the provider simulator: said so, and free
        body["simulated"] = True
    body["usage"] = usage_json(usage, cost)
    return body, cost


_detached: set[asyncio.Task] = set()


def _detach(coroutine) -> None:
    """Work that outlives its request (billing a call the client walked away from): kept
    referenced until it is done."""
    task = asyncio.ensure_future(coroutine)
    _detached.add(task)
    task.add_done_callback(_detached.discard)


def answer_tokens(answer: dict[str, Any]) -> int:
    """The tokens an answer's text holds (content, reasoning, tool-call arguments)."""
    total = 0
    for choice in answer.get("choices") or ():
        message = choice.get("message") or {}
        for name in ("content", "reasoning", "reasoning_content"):
            if isinstance(message.get(name), str):
                total += text_tokens(message[name])
        for call in message.get("tool_calls") or ():
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str):
                total += text_tokens(arguments)
    return total


def floored_usage(
    admission: Admission, endpoint: EndpointSnap, answer: dict[str, Any], usage: Usage
) -> Usage:
    """A provider that sent no usage is billed our estimate, never $0."""
    if usage.prompt_tokens and (usage.completion_tokens or not answer_tokens(answer)):
        return usage
    return Usage(
        prompt_tokens=usage.prompt_tokens or admission.prompt_for(endpoint),
        completion_tokens=usage.completion_tokens or answer_tokens(answer),
        cached_tokens=usage.cached_tokens,
        reasoning_tokens=usage.reasoning_tokens,
    )


def _images_for(admission: Admission, request: ChatRequest, body: dict[str, Any]):
    """Image URLs are fetched by us for self-hosted endpoints (routing.imagefetch), once, when
    one is tried; None when no candidate needs it (the common case costs this check)."""
    if request.has_images and any(e.self_hosted for e in admission.candidates):
        return imagefetch.InlinedBody(body)
    return None


async def _body_for(endpoint: EndpointSnap, body: dict[str, Any], images) -> dict[str, Any]:
    return await images.get() if images is not None and endpoint.self_hosted else body


async def _image_refused(
    admission: Admission, attempts: list[router.Attempt], refused: Exception
) -> GatewayError:
    cost = bill_attempts(admission, attempts)
    await settle(admission, cost, reached_provider=cost > 0)
    return bad_request(str(refused), param="messages", code="image_url_refused")


def may_reason(admission: Admission, body: dict[str, Any], endpoint: EndpointSnap) -> bool:
    """May this endpoint think before it answers (a reasoning model not told to keep its
    thinking minimal)? Then it gets the longer first-token floor and idle limit."""
    if body.get("reasoning_effort") in ("none", "minimal"):
        return False
    return any(m.id == endpoint.model_id and m.reasoning_levels for m in admission.models)


def record_speed(endpoint: EndpointSnap, tokens: int, seconds: float) -> None:
    """The endpoint's output speed, from answers long enough to measure."""
    if tokens >= 8 and seconds >= 0.05:
        health_book.record_speed(endpoint.key, tokens / seconds)


async def complete(admission: Admission, request: ChatRequest) -> dict[str, Any]:
    body = upstream_body(request, admission)
    attempts: list[router.Attempt] = []
    images = _images_for(admission, request, body)

    async def attempt(endpoint: EndpointSnap):
        _check_room(admission, attempts, endpoint)
        sent = await _body_for(endpoint, body, images)
        started = time.perf_counter()
        result = await router.call_chat_once(
            endpoint,
            attempt_body(sent, admission, endpoint),
            reasoning=may_reason(admission, body, endpoint),
        )
        elapsed = time.perf_counter() - started
        health_book.record_success(endpoint.key, ttft_ms=elapsed * 1000)
        # The whole answer's time, its first token's wait included: a slow-side speed.
        record_speed(endpoint, result[1].completion_tokens, elapsed)
        return result

    # In a task of its own, so that a client hanging up doesn't cancel a call the provider
    # is already billing: it finishes (bounded by its timeouts) and is billed what it used.
    run = asyncio.ensure_future(
        router.run(
            admission.candidates,
            attempt,
            hedge_after_ms=admission.hedge_after_ms,
            attempts=attempts,
        )
    )
    try:
        (answer, usage), endpoint, _ = await asyncio.shield(run)
    except asyncio.CancelledError:
        admission.abandoned = True
        _detach(_finish_abandoned(admission, run, attempts))
        raise
    except (router.AllAttemptsFailed, UpstreamError) as error:
        cost = bill_attempts(admission, attempts)
        await settle(admission, cost, reached_provider=reached(error) or cost > 0)
        record_failure(admission, error, streamed=False, attempts=attempts)
        raise failed(error, admission) from None
    except imagefetch.ImageRefused as refused:
        raise await _image_refused(admission, attempts, refused) from None
    except BaseException:
        await settle(admission, 0, reached_provider=False)
        raise
    return await _answered(admission, endpoint, answer, usage, attempts)


async def _answered(
    admission: Admission,
    endpoint: EndpointSnap,
    answer: dict[str, Any],
    usage: Usage,
    attempts: list[router.Attempt],
    *,
    error: str | None = None,
) -> dict[str, Any]:
    usage = floored_usage(admission, endpoint, answer, usage)
    extra = bill_attempts(admission, attempts)
    shaped, cost = shape_completion(admission, endpoint, answer, usage, extra=extra)
    await settle(admission, cost)
    events.generation_finished(
        admission,
        endpoint,
        usage,
        cost,
        attempts,
        streamed=False,
        error=error,
        response_body=shaped if admission.keeps_bodies else None,
    )
    return shaped


async def _finish_abandoned(
    admission: Admission, run: asyncio.Future, attempts: list[router.Attempt]
) -> None:
    """The client went away while a provider was working on its request: wait for the
    answer (no new attempt starts) and bill what it used, or the prompt of each attempt."""
    try:
        (answer, usage), endpoint, _ = await run
    except BaseException as error:  # noqa: BLE001 - every ending is billed
        try:
            cost = bill_attempts(admission, attempts)
            await settle(admission, cost, reached_provider=reached(error) or cost > 0)
            record_failure(admission, error, streamed=False, attempts=attempts)
        except Exception:
            logger.exception("could not bill the abandoned request %s", admission.generation_id)
        return
    try:
        await _answered(admission, endpoint, answer, usage, attempts, error="client_disconnected")
    except Exception:
        logger.exception("could not bill the abandoned request %s", admission.generation_id)


def _sse_bytes(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def open_stream(admission: Admission, request: ChatRequest) -> router.StreamResult:
    """Routes until one provider's stream has its first chunk; errors before that are
    ordinary (fallback, then an HTTP error answer)."""
    body = upstream_body(request, admission)
    attempts: list[router.Attempt] = []
    images = _images_for(admission, request, body)

    async def attempt(endpoint: EndpointSnap):
        _check_room(admission, attempts, endpoint)
        sent = await _body_for(endpoint, body, images)
        result = await router.open_stream_once(
            endpoint,
            attempt_body(sent, admission, endpoint),
            reasoning=may_reason(admission, body, endpoint),
        )
        health_book.record_success(endpoint.key, ttft_ms=result.ttft_ms)
        health_book.record_first_token(endpoint.key, result.ttft_ms)
        return result

    try:
        result, _, _ = await router.run(
            admission.candidates,
            attempt,
            hedge_after_ms=admission.hedge_after_ms,
            attempts=attempts,
        )
    except (router.AllAttemptsFailed, UpstreamError) as error:
        cost = bill_attempts(admission, attempts)
        await settle(admission, cost, reached_provider=reached(error) or cost > 0)
        record_failure(admission, error, streamed=True, attempts=attempts)
        raise failed(error, admission) from None
    except imagefetch.ImageRefused as refused:
        raise await _image_refused(admission, attempts, refused) from None
    except BaseException as error:
        # The client went away before the first chunk: what was sent upstream is billed.
        admission.abandoned = True
        cost = bill_attempts(admission, attempts)
        await asyncio.shield(settle(admission, cost, reached_provider=cost > 0))
        record_failure(admission, error, streamed=True, attempts=attempts)
        raise
    bill_attempts(admission, attempts)
    for record in attempts:
        if record.outcome == "ok":
            record.ttft_ms = result.ttft_ms  # the winner's first chunk, for the waterfall
    result.attempts = attempts
    return result


def _same(data: dict[str, Any]) -> dict[str, Any]:
    return data


async def stream_events(
    admission: Admission,
    request: ChatRequest,
    result: router.StreamResult,
    *,
    sse: bool = True,
) -> AsyncIterator[Any]:
    """The SSE body. After the first byte there is no fallback: a failure ends the stream with
    an error chunk (finish_reason "error"), never a silent truncation. `sse=False` yields the
    chunks themselves and no [DONE], for another wire format to translate (no JSON written
    and read back)."""
    emit = _sse_bytes if sse else _same
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
    if endpoint.simulated:
        base["simulated"] = True
    failure: UpstreamError | None = None
    finished = False
    progress = _Progress()

    def frame(chunk: dict[str, Any]) -> dict[str, Any] | None:
        chunk.pop("usage", None)
        if not chunk.get("choices"):
            return None  # the provider's own usage chunk: we send ours at the end
        tracker.observe(chunk)
        return {**base, **chunk}

    # Its prompt at least, as soon as it runs: detached, so the first bytes don't wait.
    progress.start(admission, tracker, result)
    try:
        for chunk in result.first:
            framed = frame(chunk)
            if framed is None:
                continue
            if any(c.get("finish_reason") for c in framed["choices"]):
                held.append(framed)
            else:
                yield emit(framed)
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
                            yield emit(pending)
                        held.clear()
                        yield emit(framed)
                await progress.record(admission, tracker, result)
        except UpstreamError as error:
            failure = error
        if failure is not None:
            health_book.record_failure(endpoint.key)
        else:
            record_speed(endpoint, tracker.delivered_tokens, time.perf_counter() - result.first_at)
        # Settled before the last bytes go out: a client that leaves on the usage chunk or
        # [DONE] changes nothing.
        usage, cost = await _bill_stream(
            admission, tracker, result, error=str(failure.kind) if failure else None
        )
        finished = True
        if failure is not None:
            for pending in held:
                yield emit(pending)
            yield emit(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "error"}],
                    "error": {
                        "message": upstream_message(failure)
                        if failure.from_provider
                        else f"The provider's stream failed: {failure.message}",
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
                    yield emit(pending)
                yield emit({**base, "choices": [], "usage": usage_json(usage, cost)})
            elif held:
                for pending in held[:-1]:
                    yield emit(pending)
                yield emit({**held[-1], "usage": usage_json(usage, cost)})
            else:
                yield emit(
                    {
                        **base,
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                        "usage": usage_json(usage, cost),
                    }
                )
        if sse:
            yield b"data: [DONE]\n\n"
    finally:
        if finished:
            await result.aclose()
        elif failure is None and not result.decoder.done:
            # The client went away mid-stream while the provider is still writing (and
            # billing) the answer: read it to its end, detached and bounded, for its usage.
            _detach(_drain_and_bill(admission, tracker, result))
        else:
            await result.aclose()
            # Shielded: the request is being cancelled, but the money must still settle.
            await asyncio.shield(
                _bill_stream(admission, tracker, result, error="client_disconnected")
            )


class _Progress:
    """A stream's cost so far, recorded on its hold as it goes (when it starts, then every
    ROUTING_STREAM_PROGRESS_SECONDS): if this process dies mid-stream, the hold's expiry
    bills that instead of releasing it, and logs the generation. One Redis call a second per
    stream (~0.25 ms)."""

    __slots__ = ("next_at",)

    def __init__(self) -> None:
        self.next_at = 0.0

    def start(
        self, admission: Admission, tracker: router.StreamTracker, result: router.StreamResult
    ) -> None:
        if settings.ROUTING_STREAM_PROGRESS_SECONDS > 0 and admission.held_nanousd:
            _detach(self.record(admission, tracker, result))

    async def record(
        self, admission: Admission, tracker: router.StreamTracker, result: router.StreamResult
    ) -> None:
        now = time.monotonic()
        every = settings.ROUTING_STREAM_PROGRESS_SECONDS
        if now < self.next_at or every <= 0 or admission.settled or not admission.held_nanousd:
            return
        self.next_at = now + every
        endpoint = result.endpoint
        try:
            usage = _delivered_usage(admission, endpoint, tracker, result.decoder.usage)
            await billing.hold_progress(
                hold_id=admission.generation_id,
                cost_nanousd=cost_nanousd(endpoint, usage) + admission.attempts_cost,
                organization_id=admission.key.organization_id,
                key_id=admission.key.key_id,
                note=events.orphan_note(admission, endpoint, usage, result.attempts or []),
            )
        except Exception:  # best effort: the stream itself goes on
            logger.warning("could not record the progress of %s", admission.generation_id)


async def _drain_and_bill(
    admission: Admission, tracker: router.StreamTracker, result: router.StreamResult
) -> None:
    progress = _Progress()
    try:
        async with asyncio.timeout(settings.ROUTING_DRAIN_SECONDS):
            async for chunks in result.drain():
                for chunk in chunks:
                    if chunk.get("choices"):
                        tracker.observe(chunk)  # generated, hence billed, if never delivered
                await progress.record(admission, tracker, result)
    except Exception:  # noqa: BLE001 - a broken or slow drain falls back to the estimate
        logger.info("could not drain the stream of %s", admission.generation_id)
    finally:
        await result.aclose()
    await _bill_stream(admission, tracker, result, error="client_disconnected")


async def _bill_stream(
    admission: Admission,
    tracker: router.StreamTracker,
    result: router.StreamResult,
    *,
    error: str | None,
) -> tuple[Usage, int]:
    """Settle a stream and record it: the provider's usage when its stream ended, else the
    prompt as held and every token seen."""
    endpoint = result.endpoint
    usage = result.decoder.usage
    if usage is None or not result.decoder.done:
        usage = _delivered_usage(admission, endpoint, tracker, usage)
    cost = cost_nanousd(endpoint, usage) + admission.attempts_cost
    await settle(admission, cost)
    events.generation_finished(
        admission,
        endpoint,
        usage,
        cost,
        result.attempts,
        streamed=True,
        error=error,
        response_body=tracker.text,
    )
    return usage, cost


def _delivered_usage(
    admission: Admission, endpoint: EndpointSnap, tracker, reported: Usage | None
) -> Usage:
    """Usage for a stream that ended without the provider's final count: what it reported so
    far, but never less than the prompt as held and the tokens delivered (reasoning too)."""
    prompt = (reported.prompt_tokens if reported else 0) or admission.prompt_for(endpoint)
    reasoning = max(reported.reasoning_tokens if reported else 0, tracker.reasoning_tokens)
    completion = max(reported.completion_tokens if reported else 0, tracker.delivered_tokens)
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=max(completion, reasoning),
        cached_tokens=reported.cached_tokens if reported else 0,
        reasoning_tokens=reasoning,
        cache_write_tokens=reported.cache_write_tokens if reported else 0,
        cache_write_1h_tokens=reported.cache_write_1h_tokens if reported else 0,
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
    rate_limited: bool = True,
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
    headers = await admit(key, tokens=tokens) if rate_limited else {}
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

"""Dashboard pages of the gateway: the playground and the organization's routing settings."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.access import can, org_view
from accounts.api.errors import error_body
from accounts.models import Organization, User
from accounts.permissions import Perm, role_can
from accounts.selectors import AuthenticatedKey, membership_find
from routing import gateway
from routing.errors import GatewayError, bad_request
from routing.models import RoutingStrategy
from routing.policy import STRATEGY_HELP, routing_policy_update
from routing.selectors import provider_list, routing_policy_get
from routing.snapshot import catalog
from routing.validation import parse_chat

# Spending the organization's credits from the browser takes the same right as making a key.
PLAYGROUND_PERM = Perm.CREATE_KEYS
PLAYGROUND_KEY_NAME = "Playground"
# Selected when the page opens, unless ?model= names another chat model.
PLAYGROUND_DEFAULT_MODEL = "google/gemini-3.1-flash-lite"


def _strategies() -> list[dict[str, str]]:
    return [
        {"value": value, "label": label, "help": STRATEGY_HELP[RoutingStrategy(value)]}
        for value, label in RoutingStrategy.choices
    ]


# Routing settings ----------------------------------------------------------------------------


class RoutingPolicyForm(forms.Form):
    strategy = forms.ChoiceField(choices=RoutingStrategy.choices, widget=forms.RadioSelect)
    provider_order = forms.CharField(
        required=False,
        max_length=1000,
        label="Preferred providers, in order",
        widget=forms.TextInput(attrs={"placeholder": "e.g. vertex-ai, google-ai-studio"}),
        help_text="Comma-separated provider slugs, tried first, best first. Empty: the strategy "
        "alone decides.",
    )
    ignored_providers = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Never use"
    )
    allow_fallbacks = forms.BooleanField(
        required=False,
        label="Fall back to other providers",
        help_text="When the preferred providers fail or can't serve a model, try the others.",
    )

    def __init__(self, *args: Any, providers: list, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ignored_providers"].choices = [(p.slug, p.name) for p in providers]

    def clean_provider_order(self) -> list[str]:
        raw = self.cleaned_data.get("provider_order") or ""
        return [slug for slug in re.split(r"[\s,]+", raw.strip().lower()) if slug]


@org_view(Perm.VIEW)
def routing_settings(request: HttpRequest) -> HttpResponse:
    providers = provider_list()
    policy = routing_policy_get(organization=request.org)
    can_manage = can(request, Perm.MANAGE_ORG)
    initial = {
        "strategy": policy.strategy,
        "provider_order": ", ".join(policy.provider_order),
        "ignored_providers": list(policy.ignored_providers),
        "allow_fallbacks": policy.allow_fallbacks,
    }
    form = RoutingPolicyForm(request.POST or None, initial=initial, providers=providers)
    if request.method == "POST":
        if not can_manage:
            raise PermissionDenied("Your role in this organization doesn't allow this.")
        if form.is_valid():
            data = form.cleaned_data
            try:
                routing_policy_update(
                    organization=request.org,
                    actor=request.user,
                    strategy=data["strategy"],
                    provider_order=data["provider_order"],
                    ignored_providers=data["ignored_providers"],
                    allow_fallbacks=data["allow_fallbacks"],
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                messages.success(request, "Default routing saved.")
                return redirect("routing_settings", org_id=request.org.id)
    if not can_manage:
        for field in form.fields.values():
            field.disabled = True
    return render(
        request,
        "routing/routing_settings.html",
        {
            "form": form,
            "policy": policy,
            "providers": providers,
            "strategies": _strategies(),
            "selected_strategy": form["strategy"].value() or policy.strategy,
            "ignored": set(form["ignored_providers"].value() or ()),
            "can_manage": can_manage,
            "active_nav": "settings",
        },
    )


# Playground ----------------------------------------------------------------------------------


def _usd(nano_per_million: int) -> str:
    return gateway.price_usd(nano_per_million)


@org_view(Perm.VIEW)
def playground(request: HttpRequest) -> HttpResponse:
    snapshot = catalog.get()
    models = [m for m in snapshot.models if not m.is_embedding and m.endpoints]
    policy = routing_policy_get(organization=request.org)
    wanted = snapshot.resolve(request.GET.get("model") or PLAYGROUND_DEFAULT_MODEL)
    selected = wanted.id if wanted in models else (models[0].id if models else None)
    data = {
        "chatUrl": reverse("playground_chat", kwargs={"org_id": request.org.id}),
        "models": {
            m.id: {
                "name": m.name,
                "maxOutputTokens": m.max_output_tokens,
                "providers": [
                    {
                        "slug": e.provider,
                        "name": e.provider_name,
                        "region": e.region,
                        "simulated": e.simulated,
                        "input": _usd(e.input_price),
                        "output": _usd(e.output_price),
                    }
                    for e in sorted(m.endpoints, key=lambda e: e.blended_price)
                ],
            }
            for m in models
        },
    }
    return render(
        request,
        "routing/playground.html",
        {
            "models": models,
            "selected_model": selected,
            "playground_data": data,
            "strategies": _strategies(),
            "default_strategy": policy.strategy,
            "can_chat": can(request, PLAYGROUND_PERM),
            "can_manage": can(request, Perm.MANAGE_ORG),
            "active_nav": "playground",
        },
    )


def playground_key(organization: Organization, user: User) -> AuthenticatedKey:
    """The key a playground chat runs under: the organization's limits, none of its own. Its id
    is stable per user, so usage and logs group a user's playground chats together."""
    return AuthenticatedKey(
        key_id=uuid.uuid5(organization.id, f"playground:{user.pk}"),
        organization_id=organization.id,
        name=PLAYGROUND_KEY_NAME,
        expires_at=None,
        revoked=False,
        spend_limit_nanousd=None,
        spend_limit_period="monthly",
        rpm_limit=None,
        tpm_limit=None,
        allowed_models=(),
        org_rpm_limit=organization.rpm_limit,
        org_tpm_limit=organization.tpm_limit,
    )


def _json_error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
    error_type: str | None = None,
    metadata: dict | None = None,
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """An error in the OpenAI shape, as /v1 answers it: the page's script reads one format."""
    body = error_body(message, status_code=status, code=code, param=param)
    if error_type:
        body["error"]["type"] = error_type
    if metadata is not None:
        body["error"]["metadata"] = metadata
    response = HttpResponse(orjson.dumps(body), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _gateway_error(error: GatewayError) -> HttpResponse:
    return _json_error(
        error.status_code,
        error.message,
        code=error.error_code,
        param=error.param,
        error_type=error.error_type,
        metadata=error.metadata,
        headers=error.extra_headers,
    )


# The client APIs the playground speaks: what the page sends is that API's own request (shown
# to the user as is), and what comes back is that API's own event stream.
PLAYGROUND_APIS = ("chat", "messages")


def _playground_data(raw: bytes) -> dict[str, Any]:
    if len(raw) > settings.REQUEST_BODY_MAX_BYTES:
        raise GatewayError(413, "The conversation is too long to send.", code="too_large")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _provider_prefs(data: dict[str, Any]) -> dict[str, Any]:
    provider: dict[str, Any] = {}
    if data.get("strategy"):
        provider["sort"] = data["strategy"]
    if data.get("provider"):
        provider["only"] = [data["provider"]]
    return provider


def playground_body(raw: bytes) -> dict[str, Any]:
    """The browser sends only what the page offers; the rest is fixed here."""
    data = _playground_data(raw)
    request = data.get("request")
    if isinstance(request, dict) and data.get("api", "chat") == "chat":
        body = {k: v for k, v in request.items() if k not in ("provider", "models", "route")}
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    else:
        body = {
            "model": data.get("model"),
            "messages": data.get("messages"),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if data.get("max_tokens") is not None:
            body["max_tokens"] = data["max_tokens"]
    provider = _provider_prefs(data)
    if provider:
        body["provider"] = provider
    return body


def playground_request(raw: bytes):
    """(api, the chat request the gateway routes, what streams the API's own events from
    (admission, chat, result))."""
    data = _playground_data(raw)
    api = data.get("api", "chat")
    if api not in PLAYGROUND_APIS:
        raise bad_request(f"'api' must be one of {', '.join(PLAYGROUND_APIS)}.", param="api")
    if api == "messages":
        from routing.wires import anthropic

        request = data.get("request")
        if not isinstance(request, dict):
            raise bad_request("'request' must be a Messages API request.", param="request")
        request = {k: v for k, v in request.items() if k not in ("provider", "models", "route")}
        request["stream"] = True
        provider = _provider_prefs(data)
        if provider:
            request["provider"] = provider
        chat = parse_chat(anthropic.messages_to_chat(request))

        def events(admission, chat, result):
            return anthropic.message_events(
                gateway.stream_events(admission, chat, result, sse=False),
                input_tokens=admission.prompt_for(result.endpoint),
            )

        return api, chat, events
    return api, parse_chat(playground_body(raw)), gateway.stream_events


@require_POST
async def playground_chat(request: HttpRequest, org_id: uuid.UUID) -> HttpResponse:
    """POST /o/<org>/playground/chat: the /v1/chat/completions path, on the session's login
    instead of an API key. Same tenant gate as every page: 404 for non-members, 403 without
    the right to spend."""
    user = await request.auser()
    if not user.is_authenticated:
        return _json_error(401, "Your session has ended; log in again.", code="not_logged_in")
    membership = await sync_to_async(membership_find)(user=user, organization_id=org_id)
    if membership is None:
        return _json_error(404, "No such organization.", code="not_found")
    if not role_can(membership.role, PLAYGROUND_PERM):
        return _json_error(
            403,
            "Your role in this organization can't spend its credits in the playground.",
            code="permission_denied",
        )
    try:
        api, chat, events = playground_request(request.body)
        key = playground_key(membership.organization, user)
        admission = await gateway.admit_chat(key, chat)
        result = await gateway.open_stream(admission, chat)
    except GatewayError as error:
        return _gateway_error(error)
    response = StreamingHttpResponse(
        events(admission, chat, result),
        content_type="text/event-stream",
    )
    response["X-Playground-Api"] = api
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in admission.headers.items():
        response[name] = value
    return response

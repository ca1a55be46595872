"""`manage.py simulator set|show|reset`: change a running provider simulator's profiles."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from routing.simulator.state import ERROR_KINDS

PROFILE_OPTIONS = (
    # (option, profile field, type, help)
    ("--latency-ms", "latency_ms", float, "Wait before the first byte."),
    ("--tokens-per-second", "tokens_per_second", float, "Streaming rate (0 = unlimited)."),
    (
        "--error-rate",
        "error_rate",
        float,
        "0..1; the n-th request fails iff floor(n*rate) > floor((n-1)*rate).",
    ),
    ("--error-kind", "error_kind", str, f"One of {', '.join(ERROR_KINDS)}."),
    ("--retry-after", "retry_after", float, "Seconds in a 429's Retry-After."),
    ("--cut-after-tokens", "cut_after_tokens", int, "Where a 'cut' stream stops."),
    ("--output-tokens", "output_tokens", int, "Length of an answer before max tokens."),
    ("--error-detail", "error_detail", str, "Text said after each error answer's message."),
)


class Command(BaseCommand):
    help = (
        "Show or change the running provider simulator's per-provider profiles "
        "(latency, tokens/s, error rate and kind)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            default=getattr(settings, "SIMULATOR_URL", "http://127.0.0.1:8100"),
            help="The simulator's address (default: settings.SIMULATOR_URL).",
        )
        actions = parser.add_subparsers(dest="action", required=True)
        set_ = actions.add_parser("set", help="Change a provider's profile.")
        set_.add_argument("slug")
        for option, field, kind, text in PROFILE_OPTIONS:
            choices = ERROR_KINDS if field == "error_kind" else None
            set_.add_argument(option, dest=field, type=kind, choices=choices, help=text)
        show = actions.add_parser("show", help="Show one provider, or all of them.")
        show.add_argument("slug", nargs="?")
        actions.add_parser("reset", help="All providers back to their defaults, counters zeroed.")
        script = actions.add_parser(
            "script", help="Queue exact answers for a provider's next chat requests, in order."
        )
        script.add_argument("slug")
        script.add_argument("replies", nargs="+", help="One answer text per request.")

    def handle(self, *args: Any, url: str, action: str, **options: Any) -> None:
        url = url.rstrip("/")
        if action == "set":
            changes = {
                field: options[field]
                for _, field, _, _ in PROFILE_OPTIONS
                if options.get(field) is not None
            }
            if not changes:
                raise CommandError("Nothing to set: give at least one option (see --help).")
            result = self._call("PATCH", f"{url}/_sim/providers/{options['slug']}", changes)
        elif action == "script":
            result = self._call(
                "POST",
                f"{url}/_sim/providers/{options['slug']}/replies",
                {"replies": options["replies"]},
            )
        elif action == "show":
            slug = options.get("slug")
            path = f"/_sim/providers/{slug}" if slug else "/_sim/providers"
            result = self._call("GET", url + path)
        else:
            self._call("POST", f"{url}/_sim/reset")
            result = self._call("GET", f"{url}/_sim/providers")
        self.stdout.write(json.dumps(result, indent=2))

    def _call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per call is noise here
        try:
            token = getattr(settings, "SIMULATOR_CONTROL_TOKEN", "")
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            response = httpx.request(method, url, json=body, headers=headers, timeout=5)
        except httpx.TransportError:
            raise CommandError(
                f"The provider simulator isn't answering at {url.split('/_sim')[0]}. "
                "Start it with `python manage.py run_simulator` (or set SIMULATOR_URL)."
            ) from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise CommandError(f"The simulator refused: {message}")
        return response.json()

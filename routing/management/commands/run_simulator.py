"""`manage.py run_simulator [--host H] [--port P] [--public]`: the provider simulator, in the
foreground, on loopback unless --public; its control API needs LLMAPI_SIMULATOR_CONTROL_TOKEN."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from routing.simulator import serve
from routing.simulator.state import WILDCARD


class Command(BaseCommand):
    help = (
        "Run the provider simulator: OpenAI, Anthropic and Gemini wire formats with each catalog "
        "provider's latency and throughput, and faults settable at run time "
        "(`manage.py simulator set ...`)."
    )
    requires_system_checks: list[str] = []  # needs no database, and must start fast

    def add_arguments(self, parser):
        parser.add_argument("--host", default=getattr(settings, "SIMULATOR_HOST", "127.0.0.1"))
        parser.add_argument(
            "--public",
            action="store_true",
            help="Allow a --host other than loopback (its control API still needs the token).",
        )
        parser.add_argument("--port", type=int, default=getattr(settings, "SIMULATOR_PORT", 8100))
        # Overrides for every provider, e.g. the benchmark's "0 ms, unlimited tokens/s".
        parser.add_argument("--latency-ms", type=float, help="Latency of every provider.")
        parser.add_argument(
            "--tokens-per-second", type=float, help="Throughput of every provider (0 = unlimited)."
        )
        parser.add_argument(
            "--output-tokens", type=int, help="Length of every answer (default 16 tokens)."
        )

    def handle(self, *args: Any, host: str, port: int, public: bool, **options: Any) -> None:
        if not public and not _loopback(host):
            raise CommandError(
                f"The simulator binds to loopback unless told otherwise: --host {host} needs "
                "--public (and LLMAPI_SIMULATOR_CONTROL_TOKEN for its control API)."
            )
        token = getattr(settings, "SIMULATOR_CONTROL_TOKEN", "")
        if not token:
            self.stderr.write(
                "No LLMAPI_SIMULATOR_CONTROL_TOKEN: the control API (faults, profiles) is off."
            )
        everyone = {
            field: options[field]
            for field in ("latency_ms", "tokens_per_second", "output_tokens")
            if options.get(field) is not None
        }
        profiles = {WILDCARD: everyone} if everyone else None

        def started() -> None:
            overrides = ", ".join(f"{k}={v:g}" for k, v in everyone.items())
            self.stdout.write(
                f"Provider simulator on http://{host}:{port}"
                + (f" ({overrides} for every provider)" if overrides else " (catalog profiles)")
            )
            self.stdout.flush()

        serve(host, port, profiles, on_start=started, control_token=token)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

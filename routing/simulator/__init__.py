"""The provider simulator: a real HTTP server speaking the OpenAI, Anthropic and Google Gemini
wire formats, with deterministic answers, correct usage (cached and reasoning tokens included),
each provider's latency and throughput from the catalog, and faults injectable at run time
(429 with Retry-After, 500, 503, stall, connection reset, stream cut or stalled after N
tokens).

It has no Django in it: `python manage.py run_simulator` runs it in its own process, and
`SimulatorServer` runs it in a background thread for tests and benchmarks.
"""

from __future__ import annotations

from .app import make_app
from .server import SimulatorServer, serve

__all__ = ["SimulatorServer", "make_app", "serve"]

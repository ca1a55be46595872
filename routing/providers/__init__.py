"""Provider adapters: translate between the OpenAI wire format (our lingua franca) and each
provider's own. Adapters are pure translation: they build requests and read responses; the
router sends them over the shared HTTP client."""

from __future__ import annotations

"""One shared adapter per wire format.

How the router drives one attempt (adapters never do I/O):

    adapter = adapter_for(target.wire)
    request = adapter.chat_request(target, body, stream=...)    # may raise UpstreamError
    response = await client.send(request.method, request.url, headers=request.headers,
                                 json=request.json)
    if response.status_code >= 400:
        raise adapter.error(response.status_code, response.headers, await response.aread())
    # not streamed:
    completion, usage = adapter.chat_response(target, response.json())  # may raise too
    # streamed:
    decoder = adapter.stream_decoder(target)
    async for data in response.aiter_bytes():
        for chunk in decoder.feed(data): ...                    # may raise UpstreamError
    for chunk in decoder.finish(): ...                          # may raise UpstreamError
    if not decoder.done: the stream was cut (ErrorKind.STREAM_CUT); bill decoder.usage or
    an estimate of what was delivered.

Adapters hold no state (a stream's state lives in its decoder), so the singletons are safe
to share across requests and tasks.
"""

from __future__ import annotations

from routing.providers.anthropic import AnthropicAdapter
from routing.providers.base import Adapter
from routing.providers.gemini import GeminiAdapter
from routing.providers.openai_compat import OpenAIAdapter

_ADAPTERS: dict[str, Adapter] = {
    adapter.wire: adapter for adapter in (OpenAIAdapter(), AnthropicAdapter(), GeminiAdapter())
}
WIRES = frozenset(_ADAPTERS)


def adapter_for(wire: str) -> Adapter:
    try:
        return _ADAPTERS[wire]
    except KeyError:
        raise LookupError(f"no adapter for wire format {wire!r}") from None

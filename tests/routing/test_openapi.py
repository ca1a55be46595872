"""/v1/openapi.json: JSON, and typed enough for generated clients (issue 13, point 6)."""

from __future__ import annotations


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_the_schema_is_json_with_typed_choices_chunks_and_a_numeric_cost(client, db):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json") or response[
        "Content-Type"
    ].startswith("application/json")
    spec = response.json()
    assert spec["openapi"].startswith("3.")

    answers = spec["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    completion = _resolve(spec, answers["application/json"]["schema"])
    chunk = _resolve(spec, answers["text/event-stream"]["schema"])

    usage = _resolve(spec, completion["properties"]["usage"])
    assert usage["properties"]["cost"]["type"] == "number"  # sent as a JSON number

    choice = _resolve(spec, completion["properties"]["choices"]["items"])
    message = _resolve(spec, choice["properties"]["message"])
    assert {"content", "tool_calls", "role"} <= set(message["properties"])
    assert "stop" in _resolve(spec, choice["properties"]["finish_reason"])["enum"]

    chunk_choice = _resolve(spec, chunk["properties"]["choices"]["items"])
    delta = _resolve(spec, chunk_choice["properties"]["delta"])
    assert {"content", "tool_calls", "role"} <= set(delta["properties"])
    call = _resolve(spec, delta["properties"]["tool_calls"]["items"])
    assert call["properties"]["index"]["type"] == "integer"

"""The Node clients (installed from npm by `make setup`) against the live gateway: one `node`
process per script runs every scenario on every wire and prints a JSON line for each."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import REASONING, WIRES, run_node

# script -> [(client label, extra scenario fields, features)]; a feature runs on every wire
# unless it is "thinking" (only the wires with a model that reasons).
NODE_CLIENTS = {
    "anthropic_sdk.mjs": [
        (
            "@anthropic-ai/sdk (Node)",
            {},
            ["create", "stream", "tools", "thinking", "count_tokens", "errors"],
        )
    ],
    "openai_sdk.mjs": [("openai (Node)", {}, ["create", "stream", "tools", "parse", "errors"])],
    "ai_sdk.mjs": [
        (
            f"AI SDK + @ai-sdk/{package}",
            {"package": package},
            ["generateText", "streamText", "generateObject", "tools"],
        )
        for package in ("openai-compatible", "anthropic")
    ],
}


def scenarios_for(script: str) -> list[dict]:
    scenarios = []
    for client, extra, features in NODE_CLIENTS[script]:
        for feature in features:
            wires = REASONING if feature == "thinking" else WIRES
            for wire, (model, provider) in wires.items():
                scenarios.append(
                    {
                        "client": client,
                        "scenario": feature,
                        "wire": wire,
                        "model": model,
                        "provider": provider,
                        **extra,
                    }
                )
    return scenarios


@pytest.mark.parametrize("script", list(NODE_CLIENTS))
def test_node_client(gateway, record_cell, script):
    base_url, key = gateway
    results = run_node(script, scenarios_for(script), base_url=base_url, key=key)
    for result in results:
        record_cell(
            result["client"], result["scenario"], result["wire"], result["ok"], result["detail"]
        )
    failed = [r for r in results if not r["ok"]]
    assert not failed, "\n".join(
        f"{r['client']} {r['scenario']} on {r['wire']}: {r['detail']}" for r in failed
    )

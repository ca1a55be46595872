"""The task-level API over real HTTP: each task through the gateway to the simulator, its
normalized answer, usage and cost; invalid structured answers retried once, both billed."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import httpx
import pytest

from billing import selectors, services
from billing.holds import org_snapshots
from billing.models import LedgerEntry

HERO = "google/gemini-3.1-flash-lite"
CHEAPEST = "google-ai-studio"  # the hero's cheapest endpoint, where its requests go first
NANO = Decimal(1_000_000_000)
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def _task(gateway, name: str, body: dict, *, secret: str | None = None) -> httpx.Response:
    base_url, default_secret = gateway
    return httpx.post(
        f"{base_url}/tasks/{name}",
        json=body,
        headers={"Authorization": f"Bearer {secret or default_secret}"},
        timeout=30,
    )


def _usage_entries(org) -> list[LedgerEntry]:
    services.usage_flush()
    return list(LedgerEntry.objects.filter(organization=org, kind=LedgerEntry.Kind.USAGE))


def _cost(answer: dict) -> int:
    return int(Decimal(str(answer["usage"]["cost"])) * NANO)


def test_summarize_answers_the_summary_with_usage_and_cost(gateway, sim, alice):
    sim.script(CHEAPEST, "  A short summary.  ")
    response = _task(gateway, "summarize", {"text": "A long text. " * 50, "max_words": 20})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "task.summarize"
    assert answer["output"] == {"summary": "A short summary."}
    # Nothing named: the cheapest healthy model that can summarize, on its cheapest endpoint.
    assert (answer["model"], answer["provider"]) == (HERO, CHEAPEST)
    usage = answer["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["calls"] == 1
    [entry] = _usage_entries(alice.org)
    assert entry.reference == answer["generation_ids"][0]
    assert -entry.amount_nanousd == _cost(answer) > 0


def test_translate_detects_the_source_language(gateway, sim):
    sim.script(CHEAPEST, '{"translation": "Bonjour le monde", "source_language": "English"}')
    response = _task(gateway, "translate", {"text": "Hello world", "target_language": "French"})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {
        "translation": "Bonjour le monde",
        "source_language": "English",
        "target_language": "French",
    }


def test_translate_with_generated_json_from_the_provider(gateway, sim):
    # No script: the simulator answers with JSON valid against the schema we asked for.
    response = _task(gateway, "translate", {"text": "Hallo", "target_language": "English"})
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["target_language"] == "English"
    assert isinstance(output["translation"], str)


PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_extract_returns_data_valid_against_the_schema(gateway, sim, alice):
    sim.script(CHEAPEST, '```json\n{"name": "Ada", "age": 36}\n```')
    response = _task(gateway, "extract", {"text": "Ada is 36 years old.", "schema": PERSON})
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"data": {"name": "Ada", "age": 36}}
    assert sim.stats(CHEAPEST)["requests"] == 1


def test_extract_retries_once_on_invalid_json_and_bills_both_calls(gateway, sim, alice):
    sim.script(CHEAPEST, "Sure! Ada, 36.", '{"name": "Ada", "age": 36}')
    response = _task(gateway, "extract", {"text": "Ada is 36 years old.", "schema": PERSON})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["output"]["data"] == {"name": "Ada", "age": 36}
    assert answer["usage"]["calls"] == 2
    assert sim.stats(CHEAPEST)["requests"] == 2
    entries = _usage_entries(alice.org)
    assert {e.reference for e in entries} == set(answer["generation_ids"])
    assert len(entries) == 2
    assert -sum(e.amount_nanousd for e in entries) == _cost(answer)


def test_extract_fails_after_a_second_invalid_answer(gateway, sim, alice):
    sim.script(CHEAPEST, '{"name": "Ada"}', '{"name": "Ada", "age": -1}')
    response = _task(gateway, "extract", {"text": "Ada.", "schema": PERSON})
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "invalid_model_output"
    assert "age" in error["message"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert len(error["metadata"]["generation_ids"]) == 2
    entries = _usage_entries(alice.org)
    assert len(entries) == 2 and all(e.amount_nanousd < 0 for e in entries)
    assert selectors.billing_check() == []


def test_classify_normalizes_the_label(gateway, sim):
    sim.script(CHEAPEST, '{"labels": ["  POSITIVE "]}')
    response = _task(
        gateway,
        "classify",
        {"text": "I love it", "labels": ["positive", "negative", "neutral"]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"labels": ["positive"], "label": "positive"}


def test_classify_retries_an_unknown_label(gateway, sim):
    sim.script(CHEAPEST, '{"labels": ["angry"]}', '{"labels": ["negative"]}')
    response = _task(gateway, "classify", {"text": "Meh", "labels": ["positive", "negative"]})
    assert response.status_code == 200, response.text
    assert response.json()["output"]["label"] == "negative"
    assert response.json()["usage"]["calls"] == 2


def test_classify_multi_label(gateway, sim):
    sim.script(CHEAPEST, '{"labels": ["billing", "Bug"]}')
    response = _task(
        gateway,
        "classify",
        {"text": "x", "labels": ["bug", "billing", "feature"], "multi_label": True},
    )
    assert response.json()["output"]["labels"] == ["billing", "bug"]


@pytest.mark.parametrize("image_url", [PNG, "https://images.example.com/receipt.png"])
def test_ocr_reads_an_image(gateway, sim, image_url):
    sim.script(CHEAPEST, "TOTAL 12.50\n")
    response = _task(gateway, "ocr", {"image_url": image_url})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["output"] == {"text": "TOTAL 12.50"}
    assert answer["model"] == HERO  # the cheapest model that takes images


def test_a_named_model_without_the_capability_is_refused(gateway, sim):
    response = _task(gateway, "ocr", {"image_url": PNG, "model": "openai/text-embedding-3-small"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "model"
    assert "embeddings" in error["message"]
    assert sim.stats(CHEAPEST)["requests"] == 0


def test_a_named_model_is_used(gateway, sim):
    response = _task(gateway, "summarize", {"text": "Some text", "model": "openai/gpt-4.1-mini"})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "openai/gpt-4.1-mini"


@pytest.mark.parametrize(
    ("name", "body", "param"),
    [
        ("summarize", {}, "text"),
        ("summarize", {"text": "x", "max_words": 0}, "max_words"),
        ("summarize", {"text": "x", "style": "poem"}, "style"),
        ("translate", {"text": "x"}, "target_language"),
        ("extract", {"text": "x", "schema": {"type": "nonsense"}}, "schema"),
        ("extract", {"text": "x"}, "schema"),
        ("classify", {"text": "x", "labels": ["only"]}, "labels"),
        ("classify", {"text": "x", "labels": ["a", "A"]}, "labels"),
        ("ocr", {"image_url": "http://insecure.example.com/a.png"}, "image_url"),
        ("ocr", {"image_url": "data:text/plain;base64,aGVsbG8="}, "image_url"),
        ("ocr", {"image_url": "data:image/png;base64,***"}, "image_url"),
        ("summarize", {"text": "x", "model": "nobody/nothing"}, "model"),
    ],
)
def test_bad_input_is_400_with_its_param(gateway, sim, name, body, param):
    response = _task(gateway, name, body)
    assert response.status_code in (400, 404), response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert sim.stats(CHEAPEST)["requests"] == 0


def test_an_unknown_task_is_404(gateway):
    response = _task(gateway, "dance", {"text": "x"})
    assert response.status_code == 404
    assert "error" in response.json()


def test_no_key_is_401(gateway):
    base_url, _ = gateway
    response = httpx.post(f"{base_url}/tasks/summarize", json={"text": "x"}, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_out_of_credit_is_402(gateway, sim, alice):
    services.billing_account_for(organization=alice.org)
    services.ledger_post(
        organization=alice.org,
        kind=LedgerEntry.Kind.ADJUSTMENT,
        amount_nanousd=-selectors.ledger_sum(organization=alice.org),
        reference="test:drain",
    )
    org_snapshots.clear_local()
    response = _task(gateway, "summarize", {"text": "x"})
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_quota"
    assert sim.stats(CHEAPEST)["requests"] == 0


def test_tasks_are_in_the_openapi_schema(client):
    spec = json.loads(client.get("/v1/openapi.json?format=json").content)
    for name in ("summarize", "translate", "extract", "classify", "ocr"):
        operation = spec["paths"][f"/v1/tasks/{name}"]["post"]
        assert operation["requestBody"]
        assert "200" in operation["responses"] and "402" in operation["responses"]

"""A stored response whose write fails (the database out of reach after the answer) never
fails the answer. Needs Redis: with the embedded default, holds live in the database too, and
no answer is served without it (tests/routing/faults/conftest.py collects it only then)."""

from __future__ import annotations

import openai
import pytest

HERO = "google/gemini-3.1-flash-lite"


def test_a_failed_write_of_the_stored_response_never_fails_the_answer(
    openai_client, sim, settings, caplog
):
    from config import db

    sim.set("google-ai-studio", output_tokens=3)
    openai_client.responses.create(model=HERO, input="Warm up", max_output_tokens=4)
    settings.DATABASE_COOLDOWN_SECONDS = 60
    db.unreachable.trip()  # the database can't be reached for now
    try:
        response = openai_client.responses.create(model=HERO, input="Hi", max_output_tokens=4)
        with openai_client.responses.stream(model=HERO, input="Hi", max_output_tokens=4) as s:
            streamed = s.get_final_response()
    finally:
        db.unreachable.reset()
    assert response.output_text and streamed.output_text
    for lost in (response, streamed):
        with pytest.raises(openai.NotFoundError):
            openai_client.responses.retrieve(lost.id)
    assert "could not store" in caplog.text

"""The narrator: statements that cite nothing or an unknown fact are dropped and counted, on
hand-written answers and through the OpenAI-compatible backend against llama.cpp's real server.

The tiny Gemma model checks the protocol and the constrained output only; what it writes is not
judged (it is useless prose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jsonschema
import pytest
from pydantic import ValidationError

from aima.domain import EvidenceRef
from aima.model_settings import ModelTask, NarratorSettings
from aima.settings import load_settings
from inference import ModelPool, check_models
from inference.errors import InvalidModelOutput
from inference.remote.openai import OpenAINarrator
from inference.tasks import (
    DraftStatement,
    Fact,
    Narrative,
    NarrativeDraft,
    NarrativeInput,
    Narrator,
    Statement,
    sift_narrative,
)
from tests.narrator.conftest import LlamaServer

FACTS = [
    Fact(
        id="seg-0007",
        text="Speaker 1 says 'open the door' at 00:12 in call.wav",
        evidence=[EvidenceRef(media_id="media-4f1c9a", start_s=12.0, end_s=13.5)],
    ),
    Fact(
        id="track-03",
        text="A person appears in frames 3 to 9 of door.mp4",
        evidence=[EvidenceRef(media_id="media-88e2d1", frame_id="frame-000003")],
    ),
]


def draft(*statements: tuple[str, list[str]]) -> NarrativeDraft:
    return NarrativeDraft(statements=[DraftStatement(text=t, citations=c) for t, c in statements])


# -- dropping and counting, on hand-written answers ---------------------------------------------


@pytest.mark.parametrize(
    ("answer", "kept", "reasons"),
    [
        (draft(("Cites an unknown fact.", ["seg-0007", "f99"])), [], [(0, "unknown_citation", ["f99"])]),
        (draft(("Cites nothing.", [])), [], [(0, "no_citation", [])]),
        (draft(("  ", ["seg-0007"])), [], [(0, "no_text", [])]),
        (
            draft(
                ("Someone asks to open the door.", ["seg-0007"]),
                ("Invented.", ["seg-0008"]),
                ("Uncited.", []),
                (" A person is seen. ", ["track-03", "seg-0007", "track-03"]),
            ),
            [
                ("Someone asks to open the door.", ["seg-0007"]),
                ("A person is seen.", ["track-03", "seg-0007"]),
            ],
            [(1, "unknown_citation", ["seg-0008"]), (2, "no_citation", [])],
        ),
        (draft(), [], []),
    ],
    ids=["unknown-id", "no-citation", "blank", "mix", "empty"],
)
def test_statements_citing_nothing_or_unknown_facts_are_dropped_and_counted(
    answer: NarrativeDraft, kept: list[tuple[str, list[str]]], reasons: list[tuple[int, str, list[str]]]
) -> None:
    narrative = sift_narrative(FACTS, answer)
    assert [(s.text, s.citations) for s in narrative.statements] == kept
    assert narrative.dropped == len(reasons)
    assert [(d.index, d.reason, d.unknown) for d in narrative.dropped_reasons] == reasons


def test_an_answer_is_read_leniently_where_a_statement_can_be_dropped_instead() -> None:
    raw = {
        "statements": [
            {"text": "No citations key."},
            {"citations": ["track-03"]},
            {"text": "Kept.", "citations": ["track-03"], "confidence": 0.9},
        ],
        "summary": "ignored",
    }
    narrative = sift_narrative(FACTS, NarrativeDraft.model_validate_json(json.dumps(raw)))
    assert narrative.statements == [Statement(text="Kept.", citations=["track-03"])]
    assert [d.reason for d in narrative.dropped_reasons] == ["no_citation", "no_text"]
    with pytest.raises(ValidationError):  # not an answer at all: the whole answer fails
        NarrativeDraft.model_validate_json('{"statements": "none"}')


def test_a_narrative_gives_one_reason_per_dropped_statement() -> None:
    with pytest.raises(ValidationError, match="dropped is 1 but 0 reasons"):
        Narrative(statements=[], dropped=1)
    narrative = sift_narrative(FACTS, draft(("x", [])))
    assert Narrative.model_validate(narrative.model_dump()) == narrative


class CannedNarrator(Narrator):
    """A backend that answers with a fixed draft: the task class sifts it, whatever the backend."""

    backend: ClassVar[str] = "canned"
    answer: ClassVar[NarrativeDraft] = draft(("Kept.", ["track-03"]), ("Invented.", ["x"]))

    def _load(self) -> None:
        pass

    def _draft(self, inputs: NarrativeInput) -> NarrativeDraft:
        return self.answer


class UnsiftedNarrator(CannedNarrator):
    def _predict(self, inputs: NarrativeInput) -> Narrative:
        return Narrative(statements=[Statement(text="Invented.", citations=["x"])])


def test_every_backend_gets_its_answer_sifted_and_the_kept_statements_checked() -> None:
    inputs = NarrativeInput(facts=FACTS)
    narrative = CannedNarrator(NarratorSettings()).predict(inputs)
    assert (narrative.text, narrative.dropped) == ("Kept.", 1)
    with pytest.raises(InvalidModelOutput, match=r"statement 0 cites unknown evidence \['x'\]"):
        UnsiftedNarrator(NarratorSettings()).predict(inputs)


# -- against llama.cpp's server ----------------------------------------------------------------


class Recorder(httpx.BaseTransport):
    """Real HTTP, every request and answer kept."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response

    def close(self) -> None:
        self.inner.close()

    def chat(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [
            (json.loads(request.content), response.json())
            for request, response in self.exchanges
            if request.url.path == "/v1/chat/completions"
        ]


def test_the_narrator_configured_as_in_production_gets_constrained_cited_statements_from_llama_cpp(
    llama_server: LlamaServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__BACKEND", "openai")
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__ENDPOINT", f"{llama_server.base}/v1")
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__MODEL", llama_server.model)
    # bounded: two statements of at most 120 characters fit in max_tokens whatever the model repeats
    options = {"max_tokens": 400, "seed": 7, "max_statements": 2, "max_statement_chars": 120}
    monkeypatch.setenv("AIMA_MODELS__NARRATOR__OPTIONS", json.dumps(options))
    settings = load_settings(data_dir=tmp_path)
    check_models(settings.models, [ModelTask.NARRATOR])
    pool = ModelPool.from_settings(settings)
    narrator = pool.get(Narrator)
    assert isinstance(narrator, OpenAINarrator)
    narrator.transport = recorder = Recorder()
    try:
        assert pool.health("narrator").state == "not_loaded"  # GET /v1/models answers
        narrative = narrator.predict(NarrativeInput(facts=FACTS, language="en"))
        assert pool.health("narrator").state == "ready"
    finally:
        pool.close()

    [(body, answer)] = recorder.chat()
    # the model gets the facts' ids and texts, nothing else (no media ids, frames or times)
    system, user = body["messages"]
    assert (system["role"], user["role"]) == ("system", "user")
    assert json.loads(user["content"]) == {"facts": [{"id": f.id, "text": f.text} for f in FACTS]}
    assert "media-" not in json.dumps(body)
    # the schema makes every statement cite one or more of the given ids
    schema = body["response_format"]["json_schema"]["schema"]
    statement = schema["properties"]["statements"]["items"]
    assert statement["required"] == ["text", "citations"]
    assert statement["properties"]["citations"]["minItems"] == 1
    assert statement["properties"]["citations"]["items"]["enum"] == [f.id for f in FACTS]
    assert statement["properties"]["text"]["maxLength"] == options["max_statement_chars"]
    assert schema["properties"]["statements"]["maxItems"] == options["max_statements"]
    # llama.cpp kept to it: a complete answer that is valid under the schema it was sent
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "stop"
    written = json.loads(choice["message"]["content"])
    jsonschema.validate(written, schema)
    assert 1 <= len(written["statements"]) <= options["max_statements"]
    # what the narrator returns: kept statements cite only given facts, the others are counted
    assert narrative.dropped + len(narrative.statements) == len(written["statements"])
    given = {f.id for f in FACTS}
    for kept in narrative.statements:
        assert kept.text.strip()
        assert kept.citations
        assert set(kept.citations) <= given
    # constrained output cannot cite nothing or an unknown id: only a blank sentence can be dropped
    assert {d.reason for d in narrative.dropped_reasons} <= {"no_text"}

"""The OpenAI-compatible backends against a fake that checks the protocol (request shape, headers,
strict JSON schema), over httpx.MockTransport and over real HTTP on loopback."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from aima.model_settings import NarratorSettings, TextEmbedderSettings, VisionDescriberSettings
from aima.settings import load_settings
from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable
from inference.pool import ModelPool
from inference.remote.openai import (
    OpenAINarrator,
    OpenAITextEmbedder,
    OpenAIVisionDescriber,
    strict_schema,
)
from inference.tasks import (
    Fact,
    Narrative,
    NarrativeInput,
    Narrator,
    TextEmbedder,
    TextsInput,
    VisionDescription,
    VisionInput,
)
from tests.inference.fakes import FakeOpenAI, Refused, Reply, check_strict_schema, serve, vector_for

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
FACTS = NarrativeInput(
    facts=[
        Fact(id="f1", text="Speaker 1 says 'open the door' at 00:12 in call.wav"),
        Fact(id="f2", text="A person appears in frames 3-9 of door.mp4"),
    ],
    language="en",
)


def narrator(fake: FakeOpenAI, **settings: Any) -> OpenAINarrator:
    block = NarratorSettings.model_validate(
        {"backend": "openai", "endpoint": "http://llm.test/v1", "model": fake.model, "api_key": "test-key"}
        | settings
    )
    model = OpenAINarrator(block)
    model.transport = fake.transport
    return model


def cites(*ids: str) -> Any:
    return lambda body: {"statements": [{"text": "Someone asks to open the door.", "citations": list(ids)}]}


def test_narrator_sends_a_strict_schema_request_and_returns_cited_statements() -> None:
    fake = FakeOpenAI(answer=cites("f1", "f2"))
    model = narrator(fake, options={"temperature": 0.1, "max_tokens": 256, "seed": 7})
    narrative = model.predict(FACTS)
    assert narrative.statements[0].citations == ["f1", "f2"]
    assert narrative.text == "Someone asks to open the door."

    request = fake.requests[-1]
    assert (request.method, request.url.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("aima/")
    body = fake.bodies[-1]
    assert (body["model"], body["temperature"], body["max_tokens"], body["seed"]) == (fake.model, 0.1, 256, 7)
    spec = body["response_format"]["json_schema"]
    assert (spec["name"], spec["strict"]) == ("narrative", True)
    statement = spec["schema"]["properties"]["statements"]["items"]
    assert statement["required"] == ["text", "citations"]
    assert statement["additionalProperties"] is False
    system, user = body["messages"]
    assert system["role"] == "system"
    assert "cite" in system["content"]
    assert json.loads(user["content"]) == {"facts": [{"id": f.id, "text": f.text} for f in FACTS.facts]}


def test_citations_are_narrowed_to_the_given_ids_and_a_server_ignoring_that_gets_statements_dropped() -> None:
    fake = FakeOpenAI()
    fake.raw_content = json.dumps(
        {
            "statements": [
                {"text": "Kept.", "citations": ["f2"]},
                {"text": "Cites an unknown fact.", "citations": ["f1", "f7"]},
                {"text": "Cites nothing.", "citations": []},
            ]
        }
    )
    narrative = narrator(fake).predict(FACTS)
    assert [(s.text, s.citations) for s in narrative.statements] == [("Kept.", ["f2"])]
    assert narrative.dropped == 2
    assert [(d.index, d.reason, d.unknown) for d in narrative.dropped_reasons] == [
        (1, "unknown_citation", ["f7"]),
        (2, "no_citation", []),
    ]
    schema = fake.bodies[-1]["response_format"]["json_schema"]["schema"]
    citations = schema["properties"]["statements"]["items"]["properties"]["citations"]
    assert citations == {
        "type": "array",
        "items": {"type": "string", "enum": ["f1", "f2"]},
        "minItems": 1,
        "maxItems": 2,
    }


@pytest.mark.parametrize(
    ("content", "finish", "match"),
    [
        ("this is not JSON", "stop", "does not match the narrative schema"),
        ('{"statements": [', "length", "cut off"),
    ],
)
def test_unusable_answers_are_invalid_output(content: str, finish: str, match: str) -> None:
    fake = FakeOpenAI()
    fake.raw_content, fake.finish_reason = content, finish
    with pytest.raises(InvalidModelOutput, match=match):
        narrator(fake).predict(FACTS)


def test_http_failures_map_to_the_three_kinds() -> None:
    fake = FakeOpenAI(answer=cites("f1"))
    with pytest.raises(ModelNotConfigured, match="AIMA_MODELS__NARRATOR__API_KEY"):
        narrator(fake, api_key="wrong").predict(FACTS)

    fake.override = lambda request: Reply(503, {"error": "loading"}, {"Retry-After": "7"})
    with pytest.raises(ModelUnavailable, match="HTTP 503") as unavailable:
        narrator(fake).predict(FACTS)
    assert (unavailable.value.retry_after, unavailable.value.outcome) == (7.0, "retry")

    fake.override = lambda request: Reply(429, {"error": "slow down"})
    with pytest.raises(ModelUnavailable, match="HTTP 429"):
        narrator(fake).predict(FACTS)

    fake.override = lambda request: Reply(200, b"<html>proxy error</html>")
    with pytest.raises(InvalidModelOutput, match="not JSON"):
        narrator(fake).predict(FACTS)

    fake.override = lambda request: Reply(200, {"choices": []})
    with pytest.raises(InvalidModelOutput, match="unexpected answer"):
        narrator(fake).predict(FACTS)

    def timeout(request: httpx.Request) -> Reply:
        raise httpx.ReadTimeout("slow", request=request)

    fake.override = timeout
    with pytest.raises(ModelUnavailable, match="timed out"):
        narrator(fake).predict(FACTS)


class SloppyNarrator(OpenAINarrator):
    """A client regression: sends pydantic's raw schema (references, optional fields)."""

    def _predict(self, inputs: NarrativeInput) -> Narrative:
        body = {
            "model": self.settings.model,
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "narrative", "strict": True, "schema": Narrative.model_json_schema()},
            },
        }
        self.call("POST", "chat/completions", json=body)
        raise AssertionError("the fake accepted a schema strict output refuses")


def test_the_fake_refuses_a_malformed_request() -> None:
    fake = FakeOpenAI(answer=cites("f1"))
    model = SloppyNarrator(narrator(fake).settings)
    model.transport = fake.transport
    with pytest.raises(InvalidModelOutput, match="references are not supported"):
        model.predict(FACTS)
    with pytest.raises(Refused, match="additionalProperties"):
        check_strict_schema({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})
    check_strict_schema(strict_schema(Narrative))
    check_strict_schema(strict_schema(VisionDescription))


def test_vision_describer_sends_the_image_as_a_data_url(tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    image.write_bytes(PNG)
    fake = FakeOpenAI(
        answer=lambda body: {
            "text": "A door in a hallway.",
            "labels": [{"name": "door", "confidence": 0.93}, {"name": "hallway", "confidence": 0.7}],
        }
    )
    block = VisionDescriberSettings(
        backend="openai", endpoint="http://vlm.test/v1", model=fake.model, api_key="test-key"
    )
    model = OpenAIVisionDescriber(block)
    model.transport = fake.transport
    description = model.predict(VisionInput(path=image, prompt="What is shown?"))
    assert description.text == "A door in a hallway."
    assert description.labels[0].name == "door"
    (part_text, part_image) = fake.bodies[-1]["messages"][0]["content"]
    assert part_text == {"type": "text", "text": "What is shown?"}
    prefix, _, data = part_image["image_url"]["url"].partition(",")
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(data) == PNG
    assert fake.bodies[-1]["response_format"]["json_schema"]["name"] == "vision_description"

    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    sent = len(fake.requests)
    with pytest.raises(InvalidModelOutput, match="not a PNG"):
        model.predict(VisionInput(path=text_file))
    assert len(fake.requests) == sent  # nothing was sent


def embedder(fake: FakeOpenAI, **settings: Any) -> OpenAITextEmbedder:
    block = TextEmbedderSettings.model_validate(
        {"backend": "openai", "endpoint": "http://emb.test/v1", "model": fake.model, "api_key": "test-key"}
        | settings
    )
    model = OpenAITextEmbedder(block)
    model.transport = fake.transport
    return model


def test_embeddings_are_batched_reordered_and_sized_by_the_model() -> None:
    fake = FakeOpenAI(model="minilm", dimension=8)
    model = embedder(fake, batch_size=2)
    assert model.dimension == 8  # learned when loading, from one probe embedding
    texts = ["alpha", "beta", "gamma", "delta", "epsilon"]
    vectors = model.predict(TextsInput(texts=texts)).vectors
    assert vectors == [vector_for(t, 8) for t in texts]  # the fake answers in reverse order
    inputs = [body["input"] for body in fake.bodies]
    assert inputs == [["dimension probe"], ["alpha", "beta"], ["gamma", "delta"], ["epsilon"]]
    assert all(body["encoding_format"] == "float" for body in fake.bodies)


def test_a_configured_dimension_skips_the_probe_and_a_wrong_one_is_refused() -> None:
    fake = FakeOpenAI(model="minilm", dimension=8)
    model = embedder(fake, dimension=8)
    assert model.dimension == 8
    assert fake.requests == []
    with pytest.raises(InvalidModelOutput, match="8 values, the model's dimension is 16"):
        embedder(fake, dimension=16).predict(TextsInput(texts=["a"]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_over_real_http_on_loopback(tmp_path: Path) -> None:
    fake = FakeOpenAI(answer=cites("f2"), dimension=8)
    with serve(fake) as base:
        block = {"backend": "openai", "endpoint": f"{base}/v1", "model": fake.model, "api_key": "test-key"}
        settings = load_settings(data_dir=tmp_path, models={"narrator": block, "text_embedder": block})
        pool = ModelPool.from_settings(settings)
        assert pool.health("narrator").state == "not_loaded"  # endpoint answers GET /v1/models
        narrative = await pool.get(Narrator).apredict(FACTS)
        assert narrative.statements[0].citations == ["f2"]
        vectors = (await pool.get(TextEmbedder).apredict(TextsInput(texts=["x", "y"]))).vectors
        assert vectors == [vector_for("x", 8), vector_for("y", 8)]
        assert pool.health("narrator").state == "ready"
        assert any(r.url.path == "/v1/models" for r in fake.requests)
    status = pool.health("narrator")  # the server is gone
    assert status.state == "down"
    assert "cannot reach" in (status.error or "")
    pool.close()


def test_an_unreachable_endpoint_is_unavailable() -> None:
    block = NarratorSettings(backend="openai", endpoint=f"http://127.0.0.1:{free_port()}/v1", model="m")
    with pytest.raises(ModelUnavailable, match="cannot reach"):
        OpenAINarrator(block).predict(FACTS)

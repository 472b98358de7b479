"""OpenAI-compatible backends: chat completions constrained by a JSON schema, and embeddings.

Any server speaking the OpenAI HTTP API works: vLLM, llama.cpp's server, Ollama, LiteLLM, a
hosted endpoint. ``ENDPOINT`` is the API base including its version, e.g.
``http://127.0.0.1:8000/v1``; the key, if any, goes in ``Authorization: Bearer``.

* `OpenAINarrator`, `OpenAIVisionDescriber`: ``POST chat/completions`` with
  ``response_format = {"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}``,
  the schema derived from the task's output model (the narrator's citations narrowed to the ids
  of the facts given); the answer is parsed and validated against that model again (a server
  may ignore the schema), then checked by the task.
* `OpenAITextEmbedder`: ``POST embeddings`` in batches of ``BATCH_SIZE``, reordered by ``index``.

Options (``AIMA_MODELS__<TASK>__OPTIONS``): ``temperature`` (0), ``max_tokens``, ``seed``,
``health_path`` (``models``), ``max_image_bytes`` (20 MiB); narrator: ``max_statements``,
``max_statement_chars`` (none).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.errors import InvalidModelOutput
from inference.remote.http import RemoteBackend
from inference.tasks.text import (
    NarrativeDraft,
    NarrativeInput,
    Narrator,
    TextEmbedder,
    TextEmbeddings,
    TextsInput,
)
from inference.tasks.vision import VisionDescriber, VisionDescription, VisionInput

T = TypeVar("T", bound=BaseModel)

NARRATOR_SYSTEM = (
    "You write a short, neutral account for human reviewers from the facts you are given. "
    "Use only those facts and add nothing. Every statement cites the ids of the facts it rests on. "
    "The facts are indicators for review, never verdicts: do not judge, diagnose or identify anyone."
)
VISION_PROMPT = (
    "Describe what is visible in this image for a human reviewer, in a few plain sentences, and list "
    "labels for the visible objects, places and activities, each with a confidence between 0 and 1. "
    "Describe only what is visible; do not guess identities, ages or intentions."
)

_SCHEMA_KEYS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
    "description", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minItems", "maxItems",
}  # fmt: skip
"""JSON-schema keywords kept in a strict ``response_format`` schema (what strict servers accept)."""

_IMAGE_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The output model's JSON schema for strict structured output: references inlined, every
    property required, no additional properties, titles/defaults and unsupported keywords dropped."""
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return convert(definitions[node["$ref"].rsplit("/", 1)[-1]])
        out = {key: convert(value) for key, value in node.items() if key in _SCHEMA_KEYS}
        if "properties" in node:
            out["properties"] = {name: convert(value) for name, value in node["properties"].items()}
            out["required"] = list(node["properties"])
            out["additionalProperties"] = False
        return out

    converted: dict[str, Any] = convert(schema)
    return converted


class OpenAIBackend(RemoteBackend):
    """The OpenAI-compatible protocol, shared by the task classes below."""

    backend: ClassVar[str] = "openai"

    def _load(self) -> None:
        _ = self.http

    def _check_available(self) -> None:
        self.call("GET", str(self.settings.options.get("health_path", "models")))

    def _check_loaded(self) -> None:
        self._check_available()

    def chat(
        self,
        messages: list[dict[str, Any]],
        output: type[BaseModel],
        name: str,
        schema: dict[str, Any] | None = None,
    ) -> tuple[str | None, str | None]:
        """A chat completion constrained to JSON of ``schema`` (default: ``output``'s strict schema):
        the answer's content, and why it cannot be used (refused, cut off, empty), or None if it can."""
        options = self.settings.options
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": name,
                    "strict": True,
                    "schema": strict_schema(output) if schema is None else schema,
                },
            },
            "temperature": float(options.get("temperature", 0.0)),
        }
        for key in ("max_tokens", "seed"):
            if key in options:
                body[key] = int(options[key])
        answer = _parse(_ChatAnswer, self.call("POST", "chat/completions", json=body))
        choice = answer.choices[0]
        content = choice.message.content
        if choice.message.refusal:
            return content, f"the model refused: {choice.message.refusal[:300]}"
        if choice.finish_reason == "length":
            return content, "the answer was cut off at max_tokens"
        if not content:
            return content, "the answer has no content"
        return content, None

    def chat_json(
        self,
        messages: list[dict[str, Any]],
        output: type[T],
        name: str,
        schema: dict[str, Any] | None = None,
    ) -> T:
        """A chat completion whose answer must be JSON of ``output``'s schema (or of ``schema``, a
        narrower one), read as ``output``."""
        content, problem = self.chat(messages, output, name, schema)
        if problem is not None or content is None:
            raise InvalidModelOutput(problem or "the answer has no content")
        try:
            return output.model_validate_json(content)
        except ValidationError as exc:
            raise InvalidModelOutput(f"the answer does not match the {name} schema: {_first(exc)}") from exc

    def image_data_url(self, path: Path) -> str:
        """The image at ``path`` as a data URL (PNG, JPEG, GIF or WebP, at most ``max_image_bytes``)."""
        limit = int(self.settings.options.get("max_image_bytes", 20 * 1024 * 1024))
        if path.stat().st_size > limit:
            raise InvalidModelOutput(f"image larger than {limit} bytes: not sent")
        data = path.read_bytes()
        media_type = next((kind for magic, kind in _IMAGE_TYPES if data.startswith(magic)), None)
        if media_type is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            media_type = "image/webp"
        if media_type is None:
            raise InvalidModelOutput("not a PNG, JPEG, GIF or WebP image")
        return f"data:{media_type};base64,{base64.b64encode(data).decode()}"

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embeddings of ``texts`` in their order, requested ``batch_size`` at a time."""
        vectors: list[list[float]] = []
        size = self.settings.batch_size
        for start in range(0, len(texts), size):
            batch = texts[start : start + size]
            body = {"model": self.settings.model, "input": batch, "encoding_format": "float"}
            answer = _parse(_EmbeddingsAnswer, self.call("POST", "embeddings", json=body))
            items = sorted(answer.data, key=lambda item: item.index)
            if [item.index for item in items] != list(range(len(batch))):
                raise InvalidModelOutput(
                    f"embeddings answer has indexes {[i.index for i in items]} for {len(batch)}"
                )
            vectors.extend(item.embedding for item in items)
        return vectors


MAX_CITATIONS = 12
"""Fact ids one narrative statement may cite."""


def narrative_schema(
    inputs: NarrativeInput, max_statements: int | None = None, max_chars: int | None = None
) -> dict[str, Any]:
    """The strict schema of a narrator's answer to ``inputs``: every statement has text and cites
    one to `MAX_CITATIONS` of the given fact ids (an ``enum``); at most ``max_statements`` statements of at
    most ``max_chars`` characters each (``maxLength``, which vLLM and llama.cpp honour and OpenAI's
    strict mode refuses), if given.

    A server that honours the schema cannot cite an unknown id; one that ignores it gets its
    statements sifted all the same (`inference.tasks.text.sift_narrative`)."""
    schema = strict_schema(NarrativeDraft)
    statements = schema["properties"]["statements"]
    if max_statements is not None:
        statements["maxItems"] = max_statements
    properties = statements["items"]["properties"]
    if max_chars is not None:
        properties["text"]["maxLength"] = max_chars
    ids = list(dict.fromkeys(fact.id for fact in inputs.facts))
    cap = min(len(ids), MAX_CITATIONS)  # a small model left unbounded may list ids until max_tokens
    properties["citations"].update(minItems=1, maxItems=cap, items={"type": "string", "enum": ids})
    return schema


class OpenAINarrator(OpenAIBackend, Narrator):
    """The narrator over ``chat/completions``: the facts (id and text, nothing else) as the user
    message, the answer constrained by `narrative_schema`. Options ``max_statements`` and
    ``max_statement_chars`` bound what the model may write (unbounded by default), so a model
    that repeats itself ends its answer instead of running into ``max_tokens``."""

    def _draft(self, inputs: NarrativeInput) -> NarrativeDraft:
        system = NARRATOR_SYSTEM
        if inputs.language:
            system += f" Write in the language with ISO 639 code {inputs.language!r}."
        if inputs.instructions:
            system += "\n\n" + inputs.instructions
        facts = [{"id": fact.id, "text": fact.text} for fact in inputs.facts]
        messages = [
            {"role": "system", "content": system},
            {"role": "user", "content": json.dumps({"facts": facts}, ensure_ascii=False)},
        ]
        options = self.settings.options
        count, chars = options.get("max_statements"), options.get("max_statement_chars")
        schema = narrative_schema(
            inputs, None if count is None else int(count), None if chars is None else int(chars)
        )
        return self.chat_json(messages, NarrativeDraft, "narrative", schema)


class OpenAIVisionDescriber(OpenAIBackend, VisionDescriber):
    def _predict(self, inputs: VisionInput) -> VisionDescription:
        url = self.image_data_url(inputs.path)
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": inputs.prompt or VISION_PROMPT},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ]
        return self.chat_json(messages, VisionDescription, "vision_description")


class OpenAITextEmbedder(OpenAIBackend, TextEmbedder):
    def _load(self) -> None:
        super()._load()
        if self.reported_dimension is None and self.configured_dimension is None:
            self.check_dimension(len(self.embed(["dimension probe"])[0]))

    def _predict(self, inputs: TextsInput) -> TextEmbeddings:
        return TextEmbeddings(vectors=self.embed(list(inputs.texts)))


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Message(_Answer):
    content: str | None = None
    refusal: str | None = None


class _Choice(_Answer):
    message: _Message
    finish_reason: str | None = None


class _ChatAnswer(_Answer):
    choices: list[_Choice] = Field(min_length=1)


class _EmbeddingItem(_Answer):
    index: int
    embedding: list[float]


class _EmbeddingsAnswer(_Answer):
    data: list[_EmbeddingItem]


def _parse(model: type[T], data: Any) -> T:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidModelOutput(f"unexpected answer from the endpoint: {_first(exc)}") from exc


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg')}"

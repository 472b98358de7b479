"""A loopback server of OpenAI's chat completions API for vision models, for testing the vision step.

It polices requests as a strict OpenAI-compatible server (vLLM serving LLaVA, OpenAI itself) does:
``Authorization: Bearer`` checked (401 ``invalid_api_key``), the model name checked (404
``model_not_found``), only known body fields, messages with roles and content parts of the real
protocol (``text`` and ``image_url`` parts; every image a base64 ``data:`` URL that decodes to an
image), at most ``max_images`` images a request (as vLLM's ``limit_mm_per_prompt``), and
``response_format`` ``json_schema`` with a name, ``strict: true`` and a schema strict output
accepts (closed objects, every property required, no references).

Its "model" looks at each image's centre colour (the tests draw the frames with PIL):

* red: one person in a chair, hands behind the back, cable ties (0.82), crying (0.7);
* green: one person lying down, a gag (0.3);
* anything else: an empty room, nothing found.

The answer follows the request's schema (checked with jsonschema before it is sent) unless a
queued `Fault` replaces it: ``invalid`` (content that breaks the schema), ``slow`` (the valid
answer after ``delay`` seconds), or an HTTP ``status`` with OpenAI's error body. Every request is
recorded (`Seen`: headers, body, the decoded images' centre colours).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from PIL import Image

from tests.inference.fakes import Refused, check_strict_schema

CHAT_KEYS = {"model", "messages", "response_format", "temperature", "max_tokens", "seed"}
SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DATA_URL = re.compile(r"data:(image/(?:png|jpeg|gif|webp));base64,([A-Za-z0-9+/=]+)")
RED, GREEN = (200, 30, 30), (30, 180, 60)
INVALID = "invalid"


@dataclass
class Fault:
    """What replaces the next answer: ``kind`` ``invalid`` (content breaking the schema), or an
    HTTP ``status``; ``delay`` seconds first either way (``kind="slow"``: only the delay)."""

    kind: str = "status"
    status: int = 503
    delay: float = 0.0


@dataclass
class Seen:
    headers: dict[str, str]
    body: dict[str, Any]
    colours: list[tuple[int, int, int]]


@dataclass
class VisionServer:
    model: str = "llava-hf/llava-1.5-7b-hf"
    api_key: str = "test-key"
    max_images: int = 1
    faults: deque[Fault] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/v1/models")
        async def models(request: Request) -> Response:
            if (denied := self._authorize(request)) is not None:
                return denied
            return JSONResponse({"object": "list", "data": [{"id": self.model, "object": "model"}]})

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            return await self._chat(request)

        return app

    # --- the protocol ---------------------------------------------------------------------------

    def _authorize(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_api_key")
        return None

    async def _chat(self, request: Request) -> Response:
        if (denied := self._authorize(request)) is not None:
            return denied
        if request.headers.get("content-type") != "application/json":
            return _error(400, "expected application/json", None)
        body = json.loads(await request.body())
        try:
            colours = self._check(body)
        except Refused as exc:
            return _error(exc.status, str(exc), "model_not_found" if exc.status == 404 else None)
        self.seen.append(Seen(dict(request.headers), body, colours))
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault is not None and fault.kind == "status":
            return _error(fault.status, "The server is overloaded or not ready yet.", None)
        schema = body["response_format"]["json_schema"]["schema"]
        if fault is not None and fault.kind == INVALID:
            content = json.dumps(_invalid(len(colours)))
            try:
                jsonschema.validate(json.loads(content), schema)
            except jsonschema.ValidationError:
                pass
            else:
                raise AssertionError("the invalid answer is valid")
        else:
            answer = {"frames": [_describe(number, colour) for number, colour in enumerate(colours, 1)]}
            jsonschema.validate(answer, schema)  # a strict server answers by the schema
            content = json.dumps(answer)
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.seen)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 600 * len(colours), "completion_tokens": 80, "total_tokens": 0},
            }
        )

    def _check(self, body: Any) -> list[tuple[int, int, int]]:
        """The request as the protocol has it; the centre colour of each image, in order."""
        _require(isinstance(body, dict), "the body must be an object")
        _require(set(body) <= CHAT_KEYS, f"unknown fields {sorted(set(body) - CHAT_KEYS)}")
        if body.get("model") != self.model:
            raise Refused(f"The model {body.get('model')!r} does not exist", 404)
        fmt = body.get("response_format")
        _require(
            isinstance(fmt, dict) and fmt.get("type") == "json_schema", "response_format must be json_schema"
        )
        spec = fmt["json_schema"]
        _require(set(spec) == {"name", "strict", "schema"}, "json_schema needs name, strict and schema")
        _require(bool(SCHEMA_NAME.match(spec["name"])), "bad schema name")
        _require(spec["strict"] is True, "strict must be true")
        check_strict_schema(spec["schema"])
        _require(isinstance(body.get("temperature", 0), int | float), "temperature must be a number")
        messages = body.get("messages")
        _require(isinstance(messages, list) and bool(messages), "messages must be a non-empty list")
        colours: list[tuple[int, int, int]] = []
        for message in messages:
            _require(isinstance(message, dict), "a message must be an object")
            _require(set(message) <= {"role", "content", "name"}, f"unknown message fields {set(message)}")
            _require(message.get("role") in ("system", "user", "assistant"), "bad role")
            content = message.get("content")
            if isinstance(content, str):
                continue
            _require(message["role"] == "user", "only user messages carry parts")
            _require(isinstance(content, list) and bool(content), "content must be a string or parts")
            for part in content:
                _require(isinstance(part, dict), "a content part must be an object")
                if part.get("type") == "text":
                    _require(set(part) == {"type", "text"} and isinstance(part["text"], str), "bad text part")
                elif part.get("type") == "image_url":
                    _require(set(part) == {"type", "image_url"}, "bad image_url part")
                    match = DATA_URL.fullmatch(str(part["image_url"].get("url", "")))
                    _require(match is not None, "image_url must be a base64 data: URL of an image")
                    assert match is not None
                    image = Image.open(io.BytesIO(base64.b64decode(match.group(2), validate=True)))
                    _require(
                        image.format is not None and image.format.lower() in match.group(1), "wrong type"
                    )
                    rgb = image.convert("RGB")
                    colours.append(rgb.getpixel((rgb.width // 2, rgb.height // 2)))  # type: ignore[arg-type]
                else:
                    raise Refused(f"unknown content part {part.get('type')!r}")
        _require(bool(colours), "a vision request needs an image")
        if len(colours) > self.max_images:
            raise Refused(f"At most {self.max_images} image(s) may be provided in one request.")
        return colours


def _describe(number: int, colour: tuple[int, int, int]) -> dict[str, Any]:
    empty: dict[str, Any] = {"people": [], "objects": [], "restraint_indicators": [], "distress_cues": []}
    if _near(colour, RED):
        return {
            "frame": number,
            "text": "A person sits on a chair with the hands behind the back.",
            "labels": [{"name": "chair", "confidence": 0.9}],
            "scene": "a bare room",
            "people_count": 1,
            "people": [{"clothing": "dark jacket", "posture": "sitting, hands behind the back"}],
            "objects": ["chair", "cable ties"],
            "restraint_indicators": [
                {
                    "type": "cable_ties",
                    "body_position": "wrists behind the back",
                    "confidence": 0.82,
                    "frame": number,
                }
            ],
            "distress_cues": [{"cue": "crying", "confidence": 0.7, "frame": number}],
        }
    if _near(colour, GREEN):
        return {
            **empty,
            "frame": number,
            "text": "A person lies on the floor.",
            "labels": [],
            "scene": "a floor",
            "people_count": 1,
            "people": [{"clothing": "grey shirt", "posture": "lying on the side"}],
            "restraint_indicators": [
                {"type": "gag", "body_position": "lying on the side", "confidence": 0.3, "frame": number}
            ],
        }
    return {
        **empty,
        "frame": number,
        "text": "An empty room.",
        "labels": [],
        "scene": "an empty room",
        "people_count": 0,
    }


def _invalid(count: int) -> dict[str, Any]:
    """An answer a server that ignores the schema might give: an unknown restraint type, a confidence
    above 1, a count as text."""
    return {
        "frames": [
            {
                "frame": number,
                "text": "Someone is tied up.",
                "people_count": "one",
                "restraint_indicators": [{"type": "chains", "confidence": 1.7}],
            }
            for number in range(1, count + 1)
        ]
    }


def _near(colour: tuple[int, int, int], target: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 40 for a, b in zip(colour, target, strict=True))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Refused(message)


def _error(status: int, message: str, code: str | None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}},
        status_code=status,
    )


@contextmanager
def running(server: VisionServer) -> Iterator[str]:
    """Serve ``server`` with uvicorn on a free loopback port, in a thread of its own (blocking clients
    call it from worker threads); yields the API base, ``http://127.0.0.1:PORT/v1``."""
    uv = uvicorn.Server(
        uvicorn.Config(server.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=uv.run, name="openai-vision-server", daemon=True)
    thread.start()
    try:
        while not uv.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        port = uv.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        uv.should_exit = True
        thread.join(timeout=30)

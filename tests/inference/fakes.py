"""Small servers that speak (and police) the real protocols: OpenAI-compatible and KServe v2.

Each fake is a function of one request to one response, so the same fake serves an
`httpx.MockTransport` and a real HTTP server on loopback (`serve`). A fake answers 400 to any
request that breaks its protocol (unknown fields, wrong types, a schema that strict structured
output would refuse, tensor data that does not fit its shape), so a client bug fails the test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jsonschema


class Refused(Exception):
    """A request the protocol does not allow; the fake answers with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def vector_for(text: str, dimension: int) -> list[float]:
    """A deterministic, normalised vector per text."""
    digest = hashlib.sha256(text.encode()).digest()
    values = [(digest[i % len(digest)] - 127.5) / 127.5 + 0.001 * i for i in range(dimension)]
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def _json_body(request: httpx.Request) -> Any:
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise Refused("Content-Type must be application/json")
    try:
        return json.loads(request.content)
    except ValueError:
        raise Refused("body is not JSON") from None


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise Refused(message)


class Fake:
    """Base: records every request, turns `Refused` into an error answer."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[Any] = []
        self.override: Callable[[httpx.Request], Reply | None] | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        try:
            reply = (self.override(request) if self.override else None) or self.handle(request)
        except Refused as exc:
            reply = Reply(exc.status, {"error": {"message": str(exc), "type": "invalid_request_error"}})
        content = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        headers = {"content-type": "application/json", **reply.headers}
        return httpx.Response(reply.status, content=content, headers=headers)

    def handle(self, request: httpx.Request) -> Reply:
        raise NotImplementedError

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


# -- OpenAI-compatible -------------------------------------------------------------------------

_CHAT_KEYS = {"model", "messages", "response_format", "temperature", "max_tokens", "seed"}
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_strict_schema(schema: Any, where: str = "schema") -> None:
    """What strict structured output demands: a valid schema, objects closed and fully required,
    no references."""
    _require(isinstance(schema, dict), f"{where} must be an object")
    jsonschema.Draft202012Validator.check_schema(schema)
    _require("$ref" not in schema and "$defs" not in schema, f"{where}: references are not supported")
    if schema.get("type") == "object":
        properties = schema.get("properties", {})
        _require(schema.get("additionalProperties") is False, f"{where}: additionalProperties must be false")
        _require(
            sorted(schema.get("required", [])) == sorted(properties), f"{where}: all properties required"
        )
        for name, sub in properties.items():
            check_strict_schema(sub, f"{where}.{name}")
    if "items" in schema:
        check_strict_schema(schema["items"], f"{where}[]")
    for option in schema.get("anyOf", []):
        check_strict_schema(option, f"{where}|")


def _check_message(message: Any) -> None:
    _require(isinstance(message, dict), "a message must be an object")
    _require(set(message) <= {"role", "content", "name"}, f"unknown message fields {set(message)}")
    _require(message.get("role") in ("system", "user", "assistant"), "bad role")
    content = message.get("content")
    if isinstance(content, str):
        return
    _require(isinstance(content, list) and bool(content), "content must be a string or a list of parts")
    for part in content:
        _require(isinstance(part, dict), "a content part must be an object")
        if part.get("type") == "text":
            _require(set(part) == {"type", "text"} and isinstance(part["text"], str), "bad text part")
        elif part.get("type") == "image_url":
            _require(set(part) == {"type", "image_url"}, "bad image_url part")
            url = part["image_url"].get("url", "")
            match = re.fullmatch(r"data:(image/(?:png|jpeg|gif|webp));base64,([A-Za-z0-9+/=]+)", url)
            _require(match is not None, "image_url must be a base64 data: URL of an image")
            assert match is not None
            base64.b64decode(match.group(2), validate=True)
        else:
            raise Refused(f"unknown content part {part.get('type')!r}")


class FakeOpenAI(Fake):
    """``/v1/models``, ``/v1/chat/completions`` (JSON-schema response format), ``/v1/embeddings``.

    ``answer(body)`` gives the JSON the model "writes"; it is validated against the schema the
    client sent, as a constrained decoder would guarantee. ``raw_content`` bypasses that.
    """

    def __init__(
        self,
        *,
        model: str = "gemma3-270m",
        api_key: str | None = "test-key",
        answer: Callable[[dict[str, Any]], Any] | None = None,
        dimension: int = 8,
    ) -> None:
        super().__init__()
        self.model = model
        self.api_key = api_key
        self.answer = answer
        self.raw_content: str | None = None
        self.finish_reason = "stop"
        self.dimension = dimension

    def handle(self, request: httpx.Request) -> Reply:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise Refused("missing or wrong API key", 401)
        route = (request.method, request.url.path)
        if route == ("GET", "/v1/models"):
            return Reply(200, {"object": "list", "data": [{"id": self.model, "object": "model"}]})
        if route == ("POST", "/v1/chat/completions"):
            return self._chat(_json_body(request))
        if route == ("POST", "/v1/embeddings"):
            return self._embeddings(_json_body(request))
        raise Refused(f"no route {route}", 404)

    def _chat(self, body: Any) -> Reply:
        self.bodies.append(body)
        _require(isinstance(body, dict), "body must be an object")
        _require(set(body) <= _CHAT_KEYS, f"unknown fields {sorted(set(body) - _CHAT_KEYS)}")
        _require(body.get("model") == self.model, f"unknown model {body.get('model')!r}")
        messages = body.get("messages")
        _require(isinstance(messages, list) and bool(messages), "messages must be a non-empty list")
        for message in messages:
            _check_message(message)
        temperature = body.get("temperature", 1.0)
        _require(isinstance(temperature, int | float) and 0 <= temperature <= 2, "bad temperature")
        fmt = body.get("response_format")
        _require(
            isinstance(fmt, dict) and fmt.get("type") == "json_schema", "response_format must be json_schema"
        )
        assert isinstance(fmt, dict)
        spec = fmt.get("json_schema")
        _require(
            isinstance(spec, dict) and set(spec) <= {"name", "schema", "strict", "description"},
            "bad json_schema",
        )
        assert isinstance(spec, dict)
        _require(
            isinstance(spec.get("name"), str) and bool(_SCHEMA_NAME.match(spec["name"])), "bad schema name"
        )
        _require(spec.get("strict") is True, "strict must be true")
        check_strict_schema(spec.get("schema"))
        if self.raw_content is not None:
            content = self.raw_content
        else:
            assert self.answer is not None, "FakeOpenAI needs an answer"
            produced = self.answer(body)
            try:
                jsonschema.validate(produced, spec["schema"])
            except jsonschema.ValidationError as exc:  # the test's canned answer, not the client, is wrong
                raise AssertionError(f"the fake's answer breaks the client's schema: {exc.message}") from exc
            content = json.dumps(produced)
        return Reply(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": self.finish_reason,
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _embeddings(self, body: Any) -> Reply:
        self.bodies.append(body)
        _require(isinstance(body, dict), "body must be an object")
        allowed = {"model", "input", "encoding_format", "dimensions", "user"}
        _require(set(body) <= allowed, f"unknown fields {sorted(set(body) - allowed)}")
        _require(body.get("model") == self.model, f"unknown model {body.get('model')!r}")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        _require(
            isinstance(texts, list) and bool(texts) and all(isinstance(t, str) and t for t in texts),
            "input must be a non-empty string or list of non-empty strings",
        )
        _require(body.get("encoding_format", "float") == "float", "only float encoding here")
        data = [
            {"object": "embedding", "index": i, "embedding": vector_for(text, self.dimension)}
            for i, text in enumerate(texts)
        ]
        data.reverse()  # clients must order by index, not by position
        return Reply(
            200, {"object": "list", "data": data, "model": self.model, "usage": {"prompt_tokens": 1}}
        )


# -- KServe v2 (Open Inference Protocol) -------------------------------------------------------

_DATATYPES = {
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
}  # fmt: skip


def check_tensor(tensor: Any) -> None:
    """A v2 request tensor: known fields, a datatype, a shape, data that fits both."""
    _require(isinstance(tensor, dict), "a tensor must be an object")
    _require(
        set(tensor) <= {"name", "shape", "datatype", "data", "parameters"}, f"unknown fields {set(tensor)}"
    )
    _require(isinstance(tensor.get("name"), str) and bool(tensor["name"]), "tensor name required")
    shape = tensor.get("shape")
    _require(isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape), "bad shape")
    _require(tensor.get("datatype") in _DATATYPES, f"bad datatype {tensor.get('datatype')!r}")
    data = tensor.get("data")
    _require(isinstance(data, list), "data must be a list")
    assert isinstance(shape, list)
    assert isinstance(data, list)
    _require(len(data) == math.prod(shape), f"{len(data)} values for shape {shape}")
    if tensor["datatype"] == "BYTES":
        _require(all(isinstance(v, str) for v in data), "BYTES data must be strings")
    elif tensor["datatype"].startswith("FP"):
        _require(
            all(isinstance(v, int | float) and not isinstance(v, bool) for v in data),
            "FP data must be numbers",
        )


class FakeKServe(Fake):
    """A v2 server with one text-embedding model: input ``text`` (BYTES [n]), output
    ``embedding`` (FP32 [n, d])."""

    def __init__(
        self, *, model: str = "minilm", dimension: int = 8, metadata_shape: list[int] | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.dimension = dimension
        self.ready = True
        self.metadata_shape = metadata_shape if metadata_shape is not None else [-1, dimension]

    def handle(self, request: httpx.Request) -> Reply:
        path = request.url.path
        match = re.fullmatch(r"/v2/models/([^/]+)(/ready|/infer)?", path)
        if match is None:
            raise Refused(f"no route {path}", 404)
        if match.group(1) != self.model:
            raise Refused(f"model {match.group(1)!r} not found", 404)
        suffix = match.group(2)
        if request.method == "GET" and suffix == "/ready":
            return Reply(200 if self.ready else 503, {"name": self.model, "ready": self.ready})
        if request.method == "GET" and suffix is None:
            return Reply(
                200,
                {
                    "name": self.model,
                    "versions": ["1"],
                    "platform": "fake",
                    "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
                    "outputs": [{"name": "embedding", "datatype": "FP32", "shape": self.metadata_shape}],
                },
            )
        if request.method == "POST" and suffix == "/infer":
            return self._infer(_json_body(request))
        raise Refused(f"no route {request.method} {path}", 405)

    def _infer(self, body: Any) -> Reply:
        self.bodies.append(body)
        _require(isinstance(body, dict), "body must be an object")
        _require(set(body) <= {"id", "inputs", "outputs", "parameters"}, f"unknown fields {set(body)}")
        _require(isinstance(body.get("id", ""), str), "id must be a string")
        inputs = body.get("inputs")
        _require(isinstance(inputs, list) and len(inputs) == 1, "exactly one input tensor")
        assert isinstance(inputs, list)
        check_tensor(inputs[0])
        tensor = inputs[0]
        _require(tensor["name"] == "text" and tensor["datatype"] == "BYTES", "input must be text: BYTES")
        _require(len(tensor["shape"]) == 1, "text must have shape [n]")
        for wanted in body.get("outputs", []):
            _require(
                isinstance(wanted, dict) and wanted.get("name") == "embedding", f"unknown output {wanted}"
            )
        texts: list[str] = tensor["data"]
        flat = [x for text in texts for x in vector_for(text, self.dimension)]
        answer: dict[str, Any] = {
            "model_name": self.model,
            "model_version": "1",
            "outputs": [
                {"name": "embedding", "datatype": "FP32", "shape": [len(texts), self.dimension], "data": flat}
            ],
        }
        if "id" in body:
            answer["id"] = body["id"]
        return Reply(200, answer)


# -- a real server on loopback -----------------------------------------------------------------


@contextmanager
def serve(fake: Fake) -> Iterator[str]:
    """Serve ``fake`` over real HTTP on 127.0.0.1; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = httpx.Request(
                self.command,
                f"http://{self.headers.get('Host', '127.0.0.1')}{self.path}",
                headers=dict(self.headers.items()),
                content=self.rfile.read(length),
            )
            response = fake(request)
            body = response.read()
            self.send_response(response.status_code)
            for name, value in response.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")  # so a stopped server is really gone
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        do_GET = do_POST = _relay

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

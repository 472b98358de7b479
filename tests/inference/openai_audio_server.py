"""A loopback server of OpenAI's audio API on faster-whisper, for testing the remote transcriber.

It answers as OpenAI's API does and polices requests as strictly: ``multipart/form-data`` only,
``Authorization: Bearer`` checked (401 ``invalid_api_key``), an unknown form field, model, language,
``response_format`` or temperature refused (400, or 404 ``model_not_found``) with OpenAI's error
body, ``timestamp_granularities[]`` accepted only with ``verbose_json``. ``verbose_json`` has
OpenAI's shape: ``language`` as Whisper's name (``german``), ``duration``, ``text``, ``segments``
(``id, seek, start, end, text, tokens, temperature, avg_logprob, compression_ratio,
no_speech_prob``) and the top-level ``words`` (``word, start, end``) when asked for.

Every request is recorded (route, form fields, audio length); `faults` queues answers that replace
the next ones (an outage, a slow answer, a malformed body).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.datastructures import UploadFile

from inference.remote.openai_audio import WHISPER_LANGUAGES as WHISPER_NAMES

TRANSCRIPTION_FIELDS = {"file", "model", "language", "prompt", "response_format", "temperature"}
TRANSCRIPTION_FIELDS |= {"timestamp_granularities[]"}
TRANSLATION_FIELDS = {"file", "model", "prompt", "response_format", "temperature"}
FORMATS = {"json", "text", "verbose_json", "srt", "vtt"}
MAX_BYTES = 25 * 1024 * 1024


@dataclass
class Fault:
    """An answer that replaces the next request's: ``status`` with ``body`` (JSON, or bytes as
    they are), after ``delay`` seconds; ``status=None`` only delays the real answer."""

    status: int | None = 503
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Seen:
    route: str
    fields: dict[str, list[str]]
    seconds: float


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code

    def response(self) -> JSONResponse:
        error = {
            "message": str(self),
            "type": "invalid_request_error",
            "param": self.param,
            "code": self.code,
        }
        return JSONResponse({"error": error}, status_code=self.status)


class WhisperAudioServer:
    """``GET /v1/models``, ``POST /v1/audio/transcriptions``, ``POST /v1/audio/translations``."""

    def __init__(self, model_dir: Path, *, model: str = "whisper-base", api_key: str | None = "test-key"):
        from faster_whisper import WhisperModel

        self.model = model
        self.api_key = api_key
        self.whisper = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
        self.faults: deque[Fault] = deque()
        self.seen: list[Seen] = []
        self.app = FastAPI()
        self.app.add_api_route("/v1/models", self._models, methods=["GET"])
        self.app.add_api_route("/v1/audio/transcriptions", self._transcriptions, methods=["POST"])
        self.app.add_api_route("/v1/audio/translations", self._translations, methods=["POST"])

    def reset(self) -> None:
        self.faults.clear()
        self.seen.clear()

    # -- routes -----------------------------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        try:
            self._authorize(request)
        except OpenAIError as exc:
            return exc.response()
        return JSONResponse(
            {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "t"}]}
        )

    async def _transcriptions(self, request: Request) -> Response:
        return await self._audio(request, "transcribe", TRANSCRIPTION_FIELDS)

    async def _translations(self, request: Request) -> Response:
        return await self._audio(request, "translate", TRANSLATION_FIELDS)

    async def _audio(self, request: Request, task: str, allowed: set[str]) -> Response:
        try:
            self._authorize(request)
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                raise OpenAIError(400, "The request must be multipart/form-data.")
            form = await request.form()
            fields: dict[str, list[str]] = {}
            upload: UploadFile | None = None
            for name, value in form.multi_items():
                if name not in allowed:
                    raise OpenAIError(400, f"Unrecognized request argument supplied: {name}", param=name)
                if isinstance(value, UploadFile):
                    if name != "file" or upload is not None:
                        raise OpenAIError(400, f"'{name}' must be a string", param=name)
                    upload = value
                else:
                    fields.setdefault(name, []).append(value)
            if upload is None:
                raise OpenAIError(400, "you must provide a file", param="file")
            content = await upload.read()
            audio = self._decode(content)
            self.seen.append(Seen(request.url.path, fields, round(len(audio) / 16000, 3)))
            if self.faults:
                fault = self.faults.popleft()
                await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    body = fault.body if fault.body is not None else {"error": {"message": "overloaded"}}
                    raw = body if isinstance(body, bytes) else None
                    if raw is not None:
                        return Response(raw, status_code=fault.status, headers=fault.headers)
                    return JSONResponse(body, status_code=fault.status, headers=fault.headers)
            return self._answer(task, fields, audio)
        except OpenAIError as exc:
            return exc.response()

    # -- the work ---------------------------------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise OpenAIError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _decode(self, content: bytes) -> Any:
        from faster_whisper import decode_audio

        if len(content) > MAX_BYTES:
            raise OpenAIError(413, "Maximum content size limit exceeded.")
        try:
            return decode_audio(io.BytesIO(content), sampling_rate=16000)
        except Exception as exc:
            raise OpenAIError(400, "Invalid file format.", param="file") from exc

    def _answer(self, task: str, fields: dict[str, list[str]], audio: Any) -> Response:
        def one(name: str, default: str | None = None) -> str | None:
            values = fields.get(name, [])
            if len(values) > 1:
                raise OpenAIError(400, f"'{name}' given more than once", param=name)
            return values[0] if values else default

        model = one("model")
        if model is None:
            raise OpenAIError(400, "you must provide a model parameter", param="model")
        if model != self.model:
            raise OpenAIError(
                404, f"The model '{model}' does not exist", param="model", code="model_not_found"
            )
        response_format = one("response_format", "json")
        if response_format not in FORMATS:
            raise OpenAIError(
                400, f"'{response_format}' is not one of {sorted(FORMATS)}", param="response_format"
            )
        if response_format in ("srt", "vtt"):
            raise OpenAIError(400, "subtitle formats are not served here", param="response_format")
        try:
            temperature = float(one("temperature", "0") or "0")
        except ValueError:
            raise OpenAIError(400, "temperature must be a number", param="temperature") from None
        if not 0 <= temperature <= 1:
            raise OpenAIError(400, "temperature must be between 0 and 1", param="temperature")
        granularities = fields.get("timestamp_granularities[]", [])
        if granularities and response_format != "verbose_json":
            raise OpenAIError(
                400,
                "timestamp_granularities is only supported with response_format=verbose_json",
                param="timestamp_granularities",
            )
        if not set(granularities) <= {"word", "segment"}:
            raise OpenAIError(
                400, f"invalid timestamp_granularities {granularities}", param="timestamp_granularities"
            )
        language = one("language")
        if language is not None and language not in WHISPER_NAMES:
            raise OpenAIError(400, f"Unsupported language: {language}", param="language")

        words = "word" in granularities
        pieces, info = self.whisper.transcribe(
            audio,
            task=task,
            language=language,
            temperature=temperature,
            initial_prompt=one("prompt"),
            word_timestamps=words,
            beam_size=1,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        segments = list(pieces)
        text = "".join(segment.text for segment in segments).strip()
        if response_format == "text":
            return PlainTextResponse(text)
        if response_format == "json":
            return JSONResponse({"text": text})
        answer: dict[str, Any] = {
            "task": task,
            "language": WHISPER_NAMES.get(info.language, info.language),
            "duration": round(info.duration, 2),
            "text": text,
        }
        if not granularities or "segment" in granularities:
            answer["segments"] = [
                {
                    "id": segment.id,
                    "seek": segment.seek,
                    "start": round(segment.start, 2),
                    "end": round(segment.end, 2),
                    "text": segment.text,
                    "tokens": segment.tokens,
                    "temperature": segment.temperature,
                    "avg_logprob": segment.avg_logprob,
                    "compression_ratio": segment.compression_ratio,
                    "no_speech_prob": segment.no_speech_prob,
                }
                for segment in segments
            ]
        if words:
            answer["words"] = [
                {"word": word.word.strip(), "start": round(word.start, 2), "end": round(word.end, 2)}
                for segment in segments
                for word in segment.words or []
            ]
        return JSONResponse(answer)


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port, in a thread of its own (so blocking
    clients can call it); yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, name="openai-audio-server", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            threading.Event().wait(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

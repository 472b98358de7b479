"""JSON log lines: trace ids of the active span, extras, exceptions, and masked secrets."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from aima.telemetry.logging import MASK, setup_logging
from aima.telemetry.tracing import setup_tracing, tracer

log = logging.getLogger("aima.test.logging")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_a_line_carries_the_active_span_and_the_extras(capsys: pytest.CaptureFixture[str]) -> None:
    setup_tracing("aima-test")
    setup_logging(service="ingest")
    with tracer().start_as_current_span("work") as span:
        log.info("stored %s", "m1", extra={"case_id": "c7", "size": 12})
        context = span.get_span_context()

    [line] = lines(capsys)
    assert line["message"] == "stored m1"
    assert line["level"] == "INFO"
    assert line["logger"] == "aima.test.logging"
    assert line["service"] == "ingest"
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")
    assert line["case_id"] == "c7"
    assert line["size"] == 12
    assert line["time"].endswith("+00:00")


def test_without_a_span_the_trace_fields_are_null(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging()
    log.warning("no trace")
    [line] = lines(capsys)
    assert line["trace_id"] is None
    assert line["span_id"] is None
    assert line["level"] == "WARNING"


def test_secret_values_are_masked_in_extras_messages_and_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging()
    extras = {
        "password": "hunter2",
        "db_password": "hunter3",
        "client_secret": "s3cr3t-value",
        "accessToken": "tok-123",
        "headers": {"Authorization": "Bearer eyJhbGciOi", "Accept": "application/json"},
        "object_key": "cases/c1/media/m1",
        "prompt_tokens": 512,
    }
    log.info("login with password=pw-in-text for postgresql://aima:url-pass@db/aima", extra=extras)
    try:
        raise RuntimeError("cannot reach redis://:redis-pass@cache:6379 (api_key: k-999)")
    except RuntimeError:
        log.exception("cache down")

    text_line, error_line = lines(capsys)
    raw = json.dumps([text_line, error_line])
    for secret in ("hunter2", "hunter3", "s3cr3t-value", "tok-123", "eyJhbGciOi", "pw-in-text", "url-pass"):
        assert secret not in raw
    assert "redis-pass" not in raw
    assert "k-999" not in raw
    assert text_line["password"] == MASK
    assert text_line["headers"] == {"Authorization": MASK, "Accept": "application/json"}
    assert text_line["message"] == f"login with password={MASK} for postgresql://aima:{MASK}@db/aima"
    # ordinary keys that merely contain a word like "key" or "tokens" are kept
    assert text_line["object_key"] == "cases/c1/media/m1"
    assert text_line["prompt_tokens"] == 512
    assert "RuntimeError: cannot reach redis://:***@cache:6379" in error_line["exception"]
    assert "Traceback" in error_line["exception"]


def test_setup_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(level="DEBUG")
    setup_logging(level="DEBUG")
    aima_handlers = [h for h in logging.getLogger().handlers if h.name == "aima"]
    assert len(aima_handlers) == 1
    log.debug("once")
    assert [line["message"] for line in lines(capsys)] == ["once"]


def test_plain_text_mode_still_shows_the_trace(capsys: pytest.CaptureFixture[str]) -> None:
    setup_tracing("aima-test")
    setup_logging(json_logs=False)
    with tracer().start_as_current_span("work") as span:
        log.info("plain token=abc123")
        trace_id = format(span.get_span_context().trace_id, "032x")
    out = capsys.readouterr().err
    assert f"[trace={trace_id}] plain token={MASK}" in out
    assert "abc123" not in out

"""Process logging: one JSON object per line, stamped with the active trace, secrets masked.

Every record gets ``trace_id``/``span_id`` of the active OpenTelemetry span, so a log line leads
to its trace and back. ``extra=`` fields become top-level keys. Values of keys that look like
credentials (password, secret, token, authorization, api key, cookie) are replaced by ``***``,
as are ``key=value`` pairs of such keys and passwords in URLs inside messages and tracebacks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aima.telemetry.tracing import current_ids

MASK = "***"
_HANDLER_NAME = "aima"
_SECRET_KEY = re.compile(
    r"passw(or)?d|pwd|secret|authori[sz]ation|credential|cookie|api[-_]?key|token$", re.I
)
_SECRET_PAIR = re.compile(
    r"""(?ix)
    (\b[\w-]*(?:passw(?:or)?d|secret|authori[sz]ation|api[-_]?key|token)["']?\s*[=:]\s*["']?)
    (?:(?:bearer|basic)\s+)?[^\s"'&,;]+
    """
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@/\s]+@")
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def mask_text(text: str) -> str:
    """``text`` with credential ``key=value`` pairs and URL passwords masked."""
    text = _SECRET_PAIR.sub(lambda m: m.group(1) + MASK, text)
    return _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", text)


def mask_value(key: str, value: Any) -> Any:
    """``value`` masked if ``key`` names a credential; mappings and lists are masked inside."""
    if _SECRET_KEY.search(key):
        return MASK
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(key, v) for v in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


class ContextFilter(logging.Filter):
    """Stamps trace and span ids on a record and masks secrets in it (it always passes it on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = current_ids()
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, mask_value(key, value))
        with contextlib.suppress(Exception):  # a bad format string: the handler reports it when emitting
            record.msg, record.args = mask_text(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:  # another handler may have formatted it first
            record.exc_text = mask_text(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, service, trace, extras, exception."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS:
                payload.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


def setup_logging(level: str = "INFO", json_logs: bool = True, service: str = "aima") -> None:
    """Log to stderr through one AIMA handler on the root logger; calling again replaces it."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.name = _HANDLER_NAME
    handler.addFilter(ContextFilter())
    handler.setFormatter(
        JsonFormatter(service)
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s] %(message)s")
    )
    root.addHandler(handler)
    root.setLevel(level.upper())

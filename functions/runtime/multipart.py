"""``multipart/form-data`` bodies parsed while they stream in (python-multipart underneath).

`MultipartFiles` turns an async body into ``(filename, chunks)`` pairs, one per file part, without
holding a part in memory: what a function needs for a bulk upload of many large files.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks


class MultipartFiles:
    """The file parts of a ``multipart/form-data`` body, parsed while it streams in.

    `files` yields ``(filename, chunks)`` in order; each part's chunks are read before the next part
    is produced (what a consumer leaves is skipped). Parts without a filename are skipped. Memory
    holds at most the events of one received chunk.
    """

    def __init__(self, chunks: AsyncIterator[bytes], boundary: bytes) -> None:
        self._chunks = chunks
        self._events: deque[tuple[str, bytes]] = deque()
        self._header = b""
        self._value = b""
        self._disposition = b""
        self._ended = False
        self._drained = False
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    async def files(self) -> AsyncIterator[tuple[str | None, AsyncIterator[bytes]]]:
        while (event := await self._next()) is not None:
            kind, value = event
            if kind != "file":
                continue  # data and ends of skipped parts
            body = self._body()
            yield _disposition_filename(value), body
            async for _ in body:
                pass

    async def _body(self) -> AsyncIterator[bytes]:
        while (event := await self._next()) is not None and event[0] == "data":
            yield event[1]

    async def _next(self) -> tuple[str, bytes] | None:
        while not self._events:
            if self._drained:
                return None
            chunk = await anext(self._chunks, None)
            if chunk is None:
                self._drained = True
                self._parser.finalize()
                if not self._ended:
                    raise MultipartParseError("the multipart body ended before its closing boundary")
            else:
                self._parser.write(chunk)
        return self._events.popleft()

    def _on_part_begin(self) -> None:
        self._disposition = b""

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._events.append(("file" if b"filename" in options else "field", self._disposition))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(("data", data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(("end", b""))

    def _on_end(self) -> None:
        self._ended = True


def _disposition_filename(disposition: bytes) -> str:
    _, options = parse_options_header(disposition)
    return options.get(b"filename", b"").decode("utf-8", errors="replace")

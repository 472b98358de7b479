"""Request bodies streamed between the event loop and a worker thread, in constant memory.

`BodySource` is how a function hands an async HTTP body (or any iterable of chunks) to blocking
code such as an object store's ``put``: the loop reads ahead in blocks while the thread writes, so
receiving and writing overlap and memory stays at a few blocks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

Chunks = Iterable[bytes] | AsyncIterable[bytes]

BLOCK = 1 << 20
"""Bytes of an async body handed to the worker thread at a time (fewer hand-offs, larger writes)."""
PREFETCH = 4
"""Blocks an async body is read ahead of the object store."""


class BodySource:
    """One body, read first by the event loop (the head, for sniffing) and then by a worker thread
    (`blocks`, for the object store).

    An async body is read ahead on the loop by a producer task in blocks of about `BLOCK` bytes, at
    most `PREFETCH` blocks ahead of the thread, so receiving and writing overlap while memory stays
    constant. After the thread is done, `settle` stops the producer and waits
    for it, so the body's iterator is free again (a multipart reader skips the rest of the part).
    """

    def __init__(self, stream: Chunks) -> None:
        self._loop = asyncio.get_running_loop()
        self._async: AsyncIterator[bytes] | None = None
        self._sync: Iterator[bytes] | None = None
        if isinstance(stream, AsyncIterable):
            self._async = aiter(stream)
        else:
            self._sync = iter(stream)
        self._pending = b""
        self._queue: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()
        self._room = asyncio.Event()
        self._waiting = False  # the producer waits for room: the consumer must wake it
        self._stopped = False
        self._producer: concurrent.futures.Future[None] | None = None

    async def head(self, size: int) -> bytes:
        """The first ``size`` bytes (fewer if the body is shorter); they are still yielded by `blocks`."""
        chunks = [self._pending]
        have = len(self._pending)
        while have < size:
            chunk = await self._next()
            if chunk is None:
                break
            chunks.append(chunk)
            have += len(chunk)
        self._pending = b"".join(chunks)
        return self._pending[:size]

    def blocks(self) -> Iterator[bytes]:
        """The body from where nothing was consumed yet; iterate it in a worker thread, then `settle`."""
        if self._pending:
            pending, self._pending = self._pending, b""
            yield pending
        if self._sync is not None:
            while (chunk := next_chunk(self._sync)) is not None:
                yield chunk
            return
        self._producer = asyncio.run_coroutine_threadsafe(self._produce(), self._loop)
        while (item := self._queue.get()) is not None:
            if self._waiting:
                self._loop.call_soon_threadsafe(self._room.set)
            if isinstance(item, BaseException):
                raise item
            yield item

    async def settle(self) -> None:
        """Stop reading ahead and wait until the producer has let go of the body."""
        self._stopped = True
        self._room.set()
        if self._producer is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wrap_future(self._producer)

    async def _produce(self) -> None:
        try:
            while not self._stopped:
                block = await self._next_block()
                if block is None or self._stopped:
                    break
                while self._queue.qsize() >= PREFETCH and not self._stopped:
                    self._room.clear()
                    self._waiting = True  # set before the check below: a get after it sees the flag
                    if self._queue.qsize() >= PREFETCH:
                        await self._room.wait()
                    self._waiting = False
                self._queue.put(block)
        except BaseException as exc:  # the consumer raises it (a client disconnect, say)
            self._queue.put(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._queue.put(None)

    async def _next(self) -> bytes | None:
        if self._async is None:
            assert self._sync is not None
            return await asyncio.to_thread(next_chunk, self._sync)
        async for chunk in self._async:
            if chunk:
                return bytes(chunk)
        return None

    async def _next_block(self) -> bytes | None:
        """About `BLOCK` bytes (few large writes beat many small ones), None at the end."""
        chunks: list[bytes] = []
        size = 0
        while size < BLOCK:
            chunk = await self._next()
            if chunk is None:
                break
            chunks.append(chunk)
            size += len(chunk)
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks) if chunks else None


def next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    for chunk in chunks:
        if chunk:
            return bytes(chunk)
    return None

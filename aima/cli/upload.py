"""``aima upload``: files into a case through the gateway's resumable upload protocol (tus 1.0.0).

Every file is created as a tus upload (``POST .../uploads`` with ``Upload-Length`` and its name in
``Upload-Metadata``) and sent in `CHUNK` bodies (``PATCH`` at ``Upload-Offset``), each with
``Upload-Checksum: sha256 ...``, so a body damaged on the way is refused (460) and sent again. A body
that fails (connection dropped, 5xx, 409, 460) is followed by ``HEAD`` for the offset the server
holds (it keeps what arrived of a cut-off body), and the upload continues from there, at most
`RETRIES` times in a row. The ``PATCH`` that completes the file names the stored file in
``X-AIMA-Media-Id`` (and ``X-AIMA-Duplicate-Of``); if that answer is lost, ``HEAD`` reports it once
the server has stored the file. The file's SHA-256, computed while sending, must be the one the
server stored (``X-AIMA-SHA256``), else the upload fails. A file the server refuses (unsupported, too
large) is reported and the next one goes on.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import click
import httpx

from aima.settings import load_settings

CHUNK = 8 * 1024 * 1024
BLOCK = 1024 * 1024
RETRIES = 5
BACKOFF = 0.5
RESULT_WAIT = 120.0
"""Seconds to wait for the server to store a file whose every byte it has."""
OFFSET_STREAM = "application/offset+octet-stream"
TUS = {"Tus-Resumable": "1.0.0"}
TIMEOUT = httpx.Timeout(30.0, read=300.0)

Progress = Callable[[int], None]
"""Told the file's bytes the server has (or is being sent) so far."""


class UploadFailed(Exception):
    """The upload cannot go on (unauthorised, no such case, server unreachable after retries)."""


class Refused(Exception):
    """The server refused this file (its problem detail is the message)."""


@dataclass(frozen=True)
class Uploaded:
    """A stored file, or the file of the case it duplicates."""

    media_id: str
    sha256: str
    duplicate_of: str | None


def problem_detail(response: httpx.Response) -> str:
    """The problem's detail (or title), else the status line."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and (body.get("detail") or body.get("title")):
        return str(body.get("detail") or body.get("title"))
    return f"HTTP {response.status_code} {response.reason_phrase}"


class Uploader:
    """Uploads files into cases of the gateway at ``api_url`` with a Bearer ``token``."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        chunk: int = CHUNK,
        retries: int = RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=api_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", **TUS},
            timeout=TIMEOUT,
            transport=transport,
        )
        self._chunk = chunk
        self._retries = retries

    def close(self) -> None:
        self._http.close()

    def upload(self, case_id: str, path: Path, progress: Progress) -> Uploaded:
        """Upload ``path`` into ``case_id``; raises `Refused` or `UploadFailed`."""
        length = path.stat().st_size
        with path.open("rb") as file:
            digest = _Digest(file)
            location = self._begin(case_id, path.name, length)
            offset = 0
            failures = 0
            while True:
                size = min(self._chunk, length - offset)
                headers = {
                    "Upload-Offset": str(offset),
                    "Content-Type": OFFSET_STREAM,
                    "Content-Length": str(size),
                    "Upload-Checksum": f"sha256 {digest.of(offset, size)}",
                }
                try:
                    response = self._http.patch(
                        location, content=_part(file, offset, size, progress), headers=headers
                    )
                except httpx.TransportError as exc:
                    response = None
                    error = f"{type(exc).__name__}: {exc}"
                if response is not None and response.status_code == 204:
                    offset = int(response.headers["upload-offset"])
                    failures = 0
                    if offset == length:
                        progress(length)
                        return self._finished(location, response, digest)
                    continue
                if response is not None:
                    self._raise_unless_retryable(response)
                    error = problem_detail(response)
                failures += 1
                if failures > self._retries:
                    raise UploadFailed(f"{path.name}: gave up after {self._retries} retries: {error}")
                time.sleep(BACKOFF * 2 ** (failures - 1))
                offset = self._offset(location, error)
                progress(offset)
                if offset == length:
                    return self._finished(location, None, digest)

    def _begin(self, case_id: str, filename: str, length: int) -> str:
        metadata = "filename " + base64.b64encode(filename.encode("utf-8")).decode("ascii")
        headers = {"Upload-Length": str(length), "Upload-Metadata": metadata}
        response = self._request("POST", f"/api/v1/cases/{quote(case_id, safe='')}/uploads", headers)
        if response.status_code != 201:
            self._raise_unless_retryable(response)
            raise UploadFailed(problem_detail(response))
        return response.headers["location"]

    def _offset(self, location: str, error: str) -> int:
        """The offset the server holds (after a failed body)."""
        response = self._request("HEAD", location, {})
        if response.status_code == 404:
            raise UploadFailed(f"the upload is gone after a failed part ({error}); upload the file again")
        if response.status_code != 200:
            raise UploadFailed(f"cannot resume: HTTP {response.status_code}")
        return int(response.headers["upload-offset"])

    def _finished(self, location: str, response: httpx.Response | None, digest: _Digest) -> Uploaded:
        """The stored file of an upload the server has every byte of: from the answer to the last
        body, else from ``HEAD`` once the server stored it (an empty ``PATCH`` at the full length
        completes it again if an earlier completion failed). Checked against the file's SHA-256."""
        deadline = time.monotonic() + RESULT_WAIT
        wait = BACKOFF
        while response is None or "x-aima-media-id" not in response.headers:
            if time.monotonic() > deadline:
                raise UploadFailed("the server has every byte but did not store the file in time")
            head = self._request("HEAD", location, {})
            if head.status_code == 200 and "x-aima-media-id" in head.headers:
                response = head
                break
            if head.status_code != 200:
                raise UploadFailed(f"cannot learn the upload's result: HTTP {head.status_code}")
            complete = {"Upload-Offset": head.headers["upload-offset"], "Content-Type": OFFSET_STREAM}
            response = self._request("PATCH", location, complete)
            if response.status_code not in (204, 409):
                self._raise_unless_retryable(response)
            time.sleep(wait)
            wait = min(wait * 2, 5.0)
        uploaded = Uploaded(
            response.headers["x-aima-media-id"],
            response.headers.get("x-aima-sha256", ""),
            response.headers.get("x-aima-duplicate-of"),
        )
        if uploaded.sha256 != digest.hexdigest():
            raise UploadFailed(
                f"the server stored SHA-256 {uploaded.sha256 or '(none)'}, the file has {digest.hexdigest()}"
            )
        return uploaded

    def _request(self, method: str, url: str, headers: dict[str, str]) -> httpx.Response:
        """A bodiless request, retried on transport errors and 5xx."""
        for attempt in range(self._retries + 1):
            try:
                response = self._http.request(method, url, headers=headers)
            except httpx.TransportError as exc:
                if attempt == self._retries:
                    raise UploadFailed(f"cannot reach {self._http.base_url}: {exc}") from exc
            else:
                if response.status_code < 500 or attempt == self._retries:
                    return response
            time.sleep(BACKOFF * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _raise_unless_retryable(response: httpx.Response) -> None:
        """Raise for an answer that retrying cannot change: `Refused` for the file, `UploadFailed`
        for the whole run (401, 403, 404 of the case, 412: the server speaks another protocol)."""
        status = response.status_code
        if status >= 500 or status in (409, 460) or _problem_type(response).endswith(":incomplete-body"):
            return
        if status in (401, 403, 404, 412):
            raise UploadFailed(f"HTTP {status}: {problem_detail(response)}")
        raise Refused(problem_detail(response))


class _Digest:
    """The file's SHA-256, built while the bodies are prepared (each byte once, in order, even when a
    body is sent again or the server kept part of one), and each body's own for ``Upload-Checksum``."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._whole = hashlib.sha256()
        self._covered = 0

    def of(self, offset: int, size: int) -> str:
        """The base64 SHA-256 of ``size`` bytes from ``offset`` (the whole file's advances past them)."""
        if offset > self._covered:
            self._feed(self._covered, offset - self._covered, None)
        body = hashlib.sha256()
        self._feed(offset, size, body)
        return base64.b64encode(body.digest()).decode("ascii")

    def hexdigest(self) -> str:
        end = self._file.seek(0, 2)
        if end > self._covered:
            self._feed(self._covered, end - self._covered, None)
        return self._whole.hexdigest()

    def _feed(self, offset: int, size: int, body: Any) -> None:
        self._file.seek(offset)
        at = offset
        while at < offset + size:
            block = self._file.read(min(BLOCK, offset + size - at))
            if not block:
                raise UploadFailed("the file shrank while it was uploaded")
            if body is not None:
                body.update(block)
            if at + len(block) > self._covered:
                self._whole.update(block[max(0, self._covered - at) :])
                self._covered = at + len(block)
            at += len(block)


def _problem_type(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("type", "")) if isinstance(body, dict) else ""


def _part(file: BinaryIO, offset: int, size: int, progress: Progress) -> Iterator[bytes]:
    """``size`` bytes of ``file`` from ``offset``, read as they are sent, reporting progress."""
    file.seek(offset)
    sent = 0
    while sent < size:
        block = file.read(min(BLOCK, size - sent))
        if not block:
            raise UploadFailed("the file shrank while it was uploaded")
        sent += len(block)
        yield block
        progress(offset + sent)


# --- the command ---------------------------------------------------------------------------------


class _Bar:
    """A click progress bar for one file, with bytes, speed and (click's) ETA."""

    def __init__(self, bar: Any, length: int) -> None:
        self._bar = bar
        self._length = length
        self._started = time.monotonic()

    def __call__(self, done: int) -> None:
        """Move to ``done`` bytes (back, too, when a part is resent)."""
        self._bar.update(done - self._bar.pos, done)

    def show(self, done: int | None) -> str:
        if done is None:
            return ""
        elapsed = max(time.monotonic() - self._started, 1e-6)
        return f"{_size(done)}/{_size(self._length)} {_size(int(done / elapsed))}/s"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _with_progress(uploader: Uploader, case_id: str, path: Path) -> Uploaded:
    """Upload ``path`` with a progress bar on a terminal (none in scripts and logs)."""
    if not sys.stderr.isatty():
        return uploader.upload(case_id, path, lambda done: None)
    length = path.stat().st_size
    with click.progressbar(length=length, label=path.name, show_eta=True, file=sys.stderr) as bar:
        meter = _Bar(bar, length)
        bar.item_show_func = meter.show
        return uploader.upload(case_id, path, meter)


@click.command("upload")
@click.argument("case_id")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--api",
    "api_url",
    envvar="AIMA_API_URL",
    default=None,
    help="Gateway URL (default: AIMA_API_URL, else AIMA_PUBLIC_BASE_URL).",
)
@click.option("--token", envvar="AIMA_TOKEN", default=None, help="Bearer token (default: AIMA_TOKEN).")
def upload_command(case_id: str, paths: tuple[Path, ...], api_url: str | None, token: str | None) -> None:
    """Upload files into CASE_ID through the gateway, resuming after a dropped connection."""
    if not token:
        raise click.ClickException("no token: set AIMA_TOKEN or pass --token")
    for path in paths:
        if not path.is_file():
            raise click.ClickException(f"not a readable file: {path}")
    uploader = Uploader(api_url or load_settings().public_base_url, token)
    refused = 0
    try:
        for path in paths:
            try:
                result = _with_progress(uploader, case_id, path)
            except Refused as exc:
                refused += 1
                outcome = f"refused: {exc}"
            else:
                outcome = f"duplicate of {result.duplicate_of}" if result.duplicate_of else result.media_id
            click.echo(f"{path}\t{outcome}")
    except UploadFailed as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        uploader.close()
    if refused:
        raise click.ClickException(f"{refused} of {len(paths)} files refused")

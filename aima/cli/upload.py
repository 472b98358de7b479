"""``aima upload``: files into a case through the gateway's resumable upload protocol.

Every file is sent in `CHUNK` parts (``POST .../uploads``, then ``PATCH`` at ``Upload-Offset``).
A part that fails (connection dropped, 5xx, offset mismatch) is followed by ``HEAD`` for the offset
the server holds, and the upload continues from there, at most `RETRIES` times in a row. A file the
server refuses (unsupported, too large) is reported and the next one goes on.
"""

from __future__ import annotations

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
OFFSET_STREAM = "application/offset+octet-stream"
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
            headers={"Authorization": f"Bearer {token}"},
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
            location = self._begin(case_id, path.name, length)
            offset = 0
            failures = 0
            while True:
                size = min(self._chunk, length - offset)
                try:
                    response = self._http.patch(
                        location,
                        content=_part(file, offset, size, progress),
                        headers={
                            "Upload-Offset": str(offset),
                            "Content-Type": OFFSET_STREAM,
                            "Content-Length": str(size),
                        },
                    )
                except httpx.TransportError as exc:
                    response = None
                    error = f"{type(exc).__name__}: {exc}"
                if response is not None and response.status_code == 200:
                    progress(length)
                    return _uploaded(response)
                if response is not None and response.status_code == 204:
                    offset = int(response.headers["upload-offset"])
                    failures = 0
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

    def _begin(self, case_id: str, filename: str, length: int) -> str:
        headers = {"Upload-Length": str(length), "X-AIMA-Filename": quote(filename, safe="")}
        response = self._request("POST", f"/api/v1/cases/{quote(case_id, safe='')}/uploads", headers)
        if response.status_code != 201:
            self._raise_unless_retryable(response)
            raise UploadFailed(problem_detail(response))
        return response.headers["location"]

    def _offset(self, location: str, error: str) -> int:
        """The offset the server holds (after a failed part)."""
        response = self._request("HEAD", location, {})
        if response.status_code == 404:
            raise UploadFailed(f"the upload is gone after a failed part ({error}); upload the file again")
        if response.status_code != 200:
            raise UploadFailed(f"cannot resume: HTTP {response.status_code}")
        return int(response.headers["upload-offset"])

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
        for the whole run (401, 403, 404 of the case)."""
        status = response.status_code
        if status >= 500 or status == 409 or _problem_type(response).endswith(":incomplete-body"):
            return
        if status in (401, 403, 404):
            raise UploadFailed(f"HTTP {status}: {problem_detail(response)}")
        raise Refused(problem_detail(response))


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


def _uploaded(response: httpx.Response) -> Uploaded:
    body = response.json()
    return Uploaded(str(body["media_id"]), str(body["sha256"]), body.get("duplicate_of"))


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

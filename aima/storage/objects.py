"""Object-store port: binary objects (media, derived artefacts) under validated keys.

Adapters: `LocalObjectStore` (a folder, embedded profile) and `S3ObjectStore` (any S3 API, cluster
profile). Every write streams in bounded chunks and computes SHA-256 on the fly; resumable multipart
sessions (`begin_upload` .. `complete_upload`) survive a restart of the process that began them;
a session may be completed with a chosen subset of its parts (those a caller committed to).
"""

from __future__ import annotations

import abc
import builtins
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from pydantic import SecretStr

    from aima.settings import Settings

MAX_KEY_LENGTH = 500
CHUNK_SIZE = 1 << 20
MIN_PART_SIZE = 5 * 1024 * 1024
"""Every part of a multipart session except the last must be at least this large (as on S3)."""
MAX_PART_NUMBER = 10_000
DEFAULT_CONTENT_TYPE = "application/octet-stream"

_SEGMENT = re.compile(r"[A-Za-z0-9._=-]+")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ObjectInfo:
    """What is known about a stored object; `sha256` is None where the adapter cannot tell cheaply."""

    key: str
    size: int
    sha256: str | None
    content_type: str | None
    etag: str | None = None


@dataclass(frozen=True)
class PartInfo:
    """One uploaded part of a multipart session."""

    part_number: int
    size: int
    etag: str


class ObjectNotFound(KeyError):
    """No object (or no multipart session) under that key or id."""


class InvalidKey(ValueError):
    """A key or prefix that is not a safe relative path."""


class ChecksumMismatch(ValueError):
    """The streamed bytes did not hash to the expected SHA-256; nothing was stored."""


def validate_key(key: str) -> str:
    """Return `key` if it is a relative path of `[A-Za-z0-9._=-]` segments, else raise `InvalidKey`."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"key must be 1..{MAX_KEY_LENGTH} characters")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise InvalidKey(f"invalid key {key!r}: bad or empty segment {segment!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is empty or valid folders (as in a key) plus a partial last segment."""
    head, slash, tail = prefix.rpartition("/")
    if slash:
        validate_key(head)
    if len(prefix) > MAX_KEY_LENGTH or (tail and not _SEGMENT.fullmatch(tail)):
        raise InvalidKey(f"invalid prefix {prefix!r}")
    return prefix


def validate_part_number(part_number: int) -> int:
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise ValueError(f"part_number must be 1..{MAX_PART_NUMBER}")
    return part_number


def normalize_sha256(value: str | None) -> str | None:
    """Lower-case a hex SHA-256 digest; raise ValueError if it is not one."""
    if value is None:
        return None
    value = value.lower()
    if not _SHA256_HEX.fullmatch(value):
        raise ValueError("expected_sha256 must be 64 hex characters")
    return value


def check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError("range must satisfy 0 <= start <= end")


def iter_chunks(source: BinaryIO | bytes | Iterable[bytes], chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield the non-empty chunks of bytes, a binary file (read `chunk_size` at a time) or an iterable."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        for offset in range(0, len(view), chunk_size):
            yield bytes(view[offset : offset + chunk_size])
        return
    read = getattr(source, "read", None)
    if read is not None:
        while chunk := read(chunk_size):
            yield chunk
        return
    for chunk in source:
        if chunk:
            yield bytes(chunk)


def check_parts(parts: Sequence[PartInfo]) -> None:
    """Refuse an empty session or a non-last part below `MIN_PART_SIZE` (the S3 rule, kept everywhere)."""
    if not parts:
        raise ValueError("no parts uploaded")
    if any(part.size < MIN_PART_SIZE for part in parts[:-1]):
        raise ValueError(f"every part but the last must be at least {MIN_PART_SIZE} bytes")


def check_chosen(chosen: Sequence[PartInfo], stored: Sequence[PartInfo]) -> builtins.list[PartInfo]:
    """``chosen`` if every one of them is stored with the same size and etag, in ascending order, and
    they follow `check_parts`; `ObjectNotFound` for a missing or replaced part."""
    by_number = {part.part_number: part for part in stored}
    numbers = [part.part_number for part in chosen]
    if numbers != sorted(set(numbers)):
        raise ValueError("parts must be named in ascending order, each once")
    for part in chosen:
        found = by_number.get(part.part_number)
        if found is None or found.etag != part.etag or found.size != part.size:
            raise ObjectNotFound(f"part {part.part_number} is gone or was replaced")
    check_parts(chosen)
    return builtins.list(chosen)


def verify_sha256(digest: hashlib._Hash, expected: str | None) -> str:
    """Return the hex digest; raise `ChecksumMismatch` if it differs from `expected`."""
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        raise ChecksumMismatch(f"sha256 mismatch: expected {expected}, got {actual}")
    return actual


class ObjectStore(abc.ABC):
    """Port for binary objects. Keys pass `validate_key`; ranges are [start, end) clipped to the object."""

    @abc.abstractmethod
    def put(
        self,
        key: str,
        source: BinaryIO | Iterable[bytes],
        *,
        content_type: str | None = None,
        expected_sha256: str | None = None,
    ) -> ObjectInfo:
        """Stream `source` into `key` in constant memory; on `ChecksumMismatch` nothing new is stored."""

    @abc.abstractmethod
    def get(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        """Open `key` now (raising `ObjectNotFound` at once) and iterate bytes [start, end)."""

    def download(self, key: str, target: Path) -> int:
        """Stream `key` into the local file `target` in constant memory; returns the bytes written.
        `ObjectNotFound` (or `InvalidKey`) as `get` raises them, before `target` is created."""
        chunks = self.get(key)
        written = 0
        with target.open("wb") as out:
            for chunk in chunks:
                written += out.write(chunk)
        return written

    @abc.abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """Size, sha256, content type and etag of `key`; `ObjectNotFound` if missing."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; no error if it is missing."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with `prefix` (non-empty); return how many."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order."""

    @abc.abstractmethod
    def presign_get(self, key: str, expires_s: int = 900) -> str:
        """A URL that lets its bearer read `key` until `expires_s` seconds from now."""

    @abc.abstractmethod
    def health(self) -> None:
        """Raise if the store cannot be reached or written."""

    @abc.abstractmethod
    def begin_upload(self, key: str, *, content_type: str | None = None) -> str:
        """Start a resumable multipart session for `key`; return its upload id."""

    @abc.abstractmethod
    def upload_part(self, key: str, upload_id: str, part_number: int, source: BinaryIO | bytes) -> PartInfo:
        """Store (or replace) part `part_number` (1..10000) of the session."""

    @abc.abstractmethod
    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """Parts stored so far, by part number; works from any process."""

    @abc.abstractmethod
    def complete_upload(
        self, key: str, upload_id: str, parts: Sequence[PartInfo] | None = None
    ) -> ObjectInfo:
        """Assemble the parts in order into `key` and return its info with the whole object's sha256.

        ``parts`` (ascending part numbers, each as `upload_part` or `list_parts` reported it) names
        exactly the parts to assemble; others the session holds are dropped. Without it, every part.
        `ObjectNotFound` if the session, or a named part with that etag, is gone."""

    @abc.abstractmethod
    def abort_upload(self, key: str, upload_id: str) -> None:
        """Drop the session and its parts; no error if it is already gone."""


def object_store_from_settings(settings: Settings) -> ObjectStore:
    """The adapter named by `settings.object_store` (`local` or `s3`)."""
    if settings.object_store == "s3":
        from aima.storage.objects_s3 import S3ObjectStore

        return S3ObjectStore(
            endpoint_url=settings.s3_endpoint_url,
            bucket=settings.s3_bucket,
            region=settings.s3_region,
            access_key_id=_secret(settings.s3_access_key_id),
            secret_access_key=_secret(settings.s3_secret_access_key),
            part_size=settings.s3_part_size,
        )
    from aima.storage.objects_local import LocalObjectStore, load_or_create_secret

    root = settings.objects_path or settings.data_dir / "objects"
    secret = _secret(settings.presign_secret)
    return LocalObjectStore(
        Path(root),
        presign_secret=secret.encode() if secret else load_or_create_secret(Path(root)),
        public_base_url=settings.public_base_url,
    )


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None

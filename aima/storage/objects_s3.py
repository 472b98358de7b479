"""Object store over any S3 API through boto3 (cluster profile); the only module importing boto3.

Integrity: every PUT and UploadPart carries Content-MD5, so S3 rejects bytes damaged in transit.
SHA-256 is computed while streaming and kept as metadata `x-amz-meta-sha256`:

* a single PUT (object up to `part_size`, buffered) sends it with the object;
* a multipart `put` with `expected_sha256` sends it at CreateMultipartUpload (and aborts on mismatch);
* otherwise (multipart `put` without it, `complete_upload`) it is recorded afterwards by a server-side
  self-copy guarded by If-Match. Objects over 5 GiB (the CopyObject limit) only get it returned:
  their `stat().sha256` is None.

Memory: `put` buffers at most one part plus one source chunk; `upload_part` holds its one part
(Content-MD5 must be known before sending). `list()` reports sha256 and content type as None (S3
listings carry no metadata); use `stat()`.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, ReadTimeoutError
from botocore.exceptions import ConnectionError as BotoConnectionError

from aima.storage import outages
from aima.storage.objects import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    MIN_PART_SIZE,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
    check_chosen,
    check_parts,
    check_range,
    iter_chunks,
    normalize_sha256,
    validate_key,
    validate_part_number,
    validate_prefix,
    verify_sha256,
)

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ObjectIdentifierTypeDef

MAX_COPY_SIZE = 5 * 1024**3
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})

# endpoint unreachable, connect timeout (botocore's ConnectionError family), connection dropped, no answer
outages.register("object store", BotoConnectionError, ConnectionClosedError, ReadTimeoutError)


class S3ObjectStore(ObjectStore):
    """`ObjectStore` over one S3 bucket; uploads above `part_size` go multipart."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        bucket: str,
        region: str,
        access_key_id: str | None,
        secret_access_key: str | None,
        part_size: int = 8 * 1024 * 1024,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self._bucket = bucket
        self._region = region
        self._part_size = part_size
        config = Config(
            region_name=region,
            signature_version="s3v4",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Content-MD5 is sent explicitly; the newer default CRC checksums break many S3 clones.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )

    def ensure_bucket(self) -> None:
        """Create the bucket unless it exists."""
        try:
            self._client.head_bucket(Bucket=self._bucket)
            return
        except ClientError as exc:
            if _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        try:
            if self._region == "us-east-1":
                self._client.create_bucket(Bucket=self._bucket)
            else:
                self._client.create_bucket(
                    Bucket=self._bucket,
                    CreateBucketConfiguration={"LocationConstraint": self._region},  # type: ignore[typeddict-item]
                )
        except ClientError as exc:
            if _code(exc) != "BucketAlreadyOwnedByYou":
                raise

    # -- objects -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO | Iterable[bytes],
        *,
        content_type: str | None = None,
        expected_sha256: str | None = None,
    ) -> ObjectInfo:
        validate_key(key)
        expected = normalize_sha256(expected_sha256)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        digest, buffer = hashlib.sha256(), bytearray()
        chunks = iter_chunks(source)
        for chunk in chunks:
            digest.update(chunk)
            buffer += chunk
            if len(buffer) > self._part_size:
                return self._put_multipart(key, buffer, chunks, digest, content_type, expected)
        sha256 = verify_sha256(digest, expected)
        body = bytes(buffer)
        response = self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentMD5=_md5(body),
            ContentType=content_type,
            Metadata={"sha256": sha256},
        )
        return ObjectInfo(key, len(body), sha256, content_type, _etag(response["ETag"]))

    def get(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        validate_key(key)
        check_range(start, end)
        if end == start:
            self.stat(key)
            return iter(())
        extra: dict[str, Any] = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key, **extra)
        except ClientError as exc:
            if _code(exc) == "InvalidRange":
                return iter(())
            raise _translate(exc, key) from exc
        return _stream(response["Body"], chunk_size)

    def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            raise _translate(exc, key) from exc
        return ObjectInfo(
            key,
            head["ContentLength"],
            head.get("Metadata", {}).get("sha256"),
            head.get("ContentType"),
            _etag(head["ETag"]),
        )

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        validate_key(key)
        self._client.delete_object(Bucket=self._bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        if not validate_prefix(prefix):
            raise InvalidKey("delete_prefix needs a non-empty prefix")
        deleted = 0
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=prefix, PaginationConfig={"PageSize": 1000}
        )
        for page in pages:
            batch: builtins.list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]} for item in page.get("Contents", [])
            ]
            if not batch:
                continue
            response = self._client.delete_objects(
                Bucket=self._bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            errors = response.get("Errors", [])
            if errors:
                raise OSError(f"could not delete {len(errors)} objects under {prefix!r}: {errors[0]}")
            deleted += len(batch)
        return deleted

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=validate_prefix(prefix)
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"], item["Size"], None, None, _etag(item["ETag"]))

    def presign_get(self, key: str, expires_s: int = 900) -> str:
        validate_key(key)
        return self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires_s
        )

    def health(self) -> None:
        self._client.head_bucket(Bucket=self._bucket)

    # -- multipart sessions --------------------------------------------------------------------

    def begin_upload(self, key: str, *, content_type: str | None = None) -> str:
        validate_key(key)
        return self._create_upload(key, content_type or DEFAULT_CONTENT_TYPE, {})

    def upload_part(self, key: str, upload_id: str, part_number: int, source: BinaryIO | bytes) -> PartInfo:
        validate_key(key)
        validate_part_number(part_number)
        body = source if isinstance(source, bytes) else b"".join(iter_chunks(source))
        try:
            response = self._client.upload_part(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=part_number,
                Body=body,
                ContentMD5=_md5(body),
            )
        except ClientError as exc:
            raise _translate(exc, f"{key} (upload {upload_id})") from exc
        return PartInfo(part_number, len(body), _etag(response["ETag"]))

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        validate_key(key)
        parts = []
        try:
            for page in self._client.get_paginator("list_parts").paginate(
                Bucket=self._bucket, Key=key, UploadId=upload_id
            ):
                for part in page.get("Parts", []):
                    parts.append(PartInfo(part["PartNumber"], part["Size"], _etag(part["ETag"])))
        except ClientError as exc:
            raise _translate(exc, f"{key} (upload {upload_id})") from exc
        return sorted(parts, key=lambda part: part.part_number)

    def complete_upload(
        self, key: str, upload_id: str, parts: Sequence[PartInfo] | None = None
    ) -> ObjectInfo:
        stored = self.list_parts(key, upload_id)
        if parts is None:
            check_parts(stored)
            parts = stored
        else:
            parts = check_chosen(parts, stored)
        self._complete(key, upload_id, [{"PartNumber": p.part_number, "ETag": f'"{p.etag}"'} for p in parts])
        head = self.stat(key)
        digest = hashlib.sha256()
        for chunk in self.get(key):
            digest.update(chunk)
        sha256 = digest.hexdigest()
        etag = self._record_sha256(key, sha256, head)
        return ObjectInfo(key, head.size, sha256, head.content_type, etag)

    def abort_upload(self, key: str, upload_id: str) -> None:
        validate_key(key)
        try:
            self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) not in _NOT_FOUND:
                raise

    # -- internals -----------------------------------------------------------------------------

    def _put_multipart(
        self,
        key: str,
        buffer: bytearray,
        chunks: Iterator[bytes],
        digest: hashlib._Hash,
        content_type: str,
        expected: str | None,
    ) -> ObjectInfo:
        """Continue a `put` whose first bytes already exceed one part: stream parts of `part_size`."""
        metadata = {"sha256": expected} if expected else {}
        upload_id = self._create_upload(key, content_type, metadata)
        parts: builtins.list[CompletedPartTypeDef] = []
        size = 0
        try:
            while True:
                while len(buffer) >= self._part_size:
                    size += self._send_part(key, upload_id, parts, bytes(buffer[: self._part_size]))
                    del buffer[: self._part_size]
                chunk = next(chunks, None)
                if chunk is None:
                    break
                digest.update(chunk)
                buffer += chunk
            if buffer:
                size += self._send_part(key, upload_id, parts, bytes(buffer))
            sha256 = verify_sha256(digest, expected)
            etag: str | None = self._complete(key, upload_id, parts)
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.abort_upload(key, upload_id)
            raise
        if expected is None:
            etag = self._record_sha256(key, sha256, ObjectInfo(key, size, None, content_type, etag))
        return ObjectInfo(key, size, sha256, content_type, etag)

    def _create_upload(self, key: str, content_type: str, metadata: dict[str, str]) -> str:
        response = self._client.create_multipart_upload(
            Bucket=self._bucket, Key=key, ContentType=content_type, Metadata=metadata
        )
        return response["UploadId"]

    def _send_part(
        self, key: str, upload_id: str, parts: builtins.list[CompletedPartTypeDef], body: bytes
    ) -> int:
        number = len(parts) + 1
        response = self._client.upload_part(
            Bucket=self._bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ContentMD5=_md5(body),
        )
        parts.append({"PartNumber": number, "ETag": response["ETag"]})
        return len(body)

    def _complete(self, key: str, upload_id: str, parts: builtins.list[CompletedPartTypeDef]) -> str:
        try:
            response = self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except ClientError as exc:
            raise _translate(exc, f"{key} (upload {upload_id})") from exc
        return _etag(response.get("ETag", ""))

    def _record_sha256(self, key: str, sha256: str, info: ObjectInfo) -> str | None:
        """Store sha256 as metadata by a guarded self-copy; return the new etag (or the old one)."""
        if info.size > MAX_COPY_SIZE:
            return info.etag
        try:
            response = self._client.copy_object(
                Bucket=self._bucket,
                Key=key,
                CopySource={"Bucket": self._bucket, "Key": key},
                CopySourceIfMatch=f'"{info.etag}"',
                MetadataDirective="REPLACE",
                Metadata={"sha256": sha256},
                ContentType=info.content_type or DEFAULT_CONTENT_TYPE,
            )
        except ClientError as exc:
            if _code(exc) != "PreconditionFailed":
                raise
            return info.etag
        return _etag(response.get("CopyObjectResult", {}).get("ETag", ""))


def _stream(body: StreamingBody, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def _etag(value: str) -> str:
    return value.strip('"')


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _translate(exc: ClientError, what: str) -> Exception:
    """`ObjectNotFound` for a missing key or upload, `ValueError` for a refused request, else as is."""
    code = _code(exc)
    if code in _NOT_FOUND:
        return ObjectNotFound(what)
    if code in {"EntityTooSmall", "InvalidPart", "InvalidPartOrder", "BadDigest", "InvalidDigest"}:
        return ValueError(f"{what}: {code}")
    return exc

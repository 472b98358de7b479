"""Object-store contract, run against the local folder and against S3 (moto's server over HTTP)."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest
from botocore.exceptions import EndpointConnectionError

from aima.settings import load_settings
from aima.storage.objects import (
    ChecksumMismatch,
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    PartInfo,
    object_store_from_settings,
    validate_key,
)
from aima.storage.objects_local import LocalObjectStore
from aima.storage.objects_s3 import S3ObjectStore

MiB = 1024 * 1024
PART = 5 * MiB
SECRET = b"s" * 32

StoreFactory = Callable[[], ObjectStore]


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Builds new store instances over the same folder or bucket (a fresh one per test)."""
    if request.param == "local":
        return lambda: LocalObjectStore(
            tmp_path / "objects", presign_secret=SECRET, public_base_url="http://aima.test/"
        )
    endpoint: str = request.getfixturevalue("s3_server")
    bucket = f"test-{uuid.uuid4().hex[:16]}"

    first = s3_store(endpoint, bucket)
    first.ensure_bucket()
    first.ensure_bucket()  # idempotent
    return lambda: s3_store(endpoint, bucket)


def s3_store(endpoint: str, bucket: str) -> S3ObjectStore:
    return S3ObjectStore(
        endpoint_url=endpoint,
        bucket=bucket,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
        part_size=PART,
    )


@pytest.fixture
def store(make_store: StoreFactory) -> ObjectStore:
    return make_store()


def read(store: ObjectStore, key: str, **kwargs: int) -> bytes:
    return b"".join(store.get(key, **kwargs))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunks_of(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def test_round_trip_reports_size_and_sha256(store: ObjectStore) -> None:
    data = os.urandom(300_000)
    info = store.put("cases/c1/media/a.bin", io.BytesIO(data), content_type="video/mp4")
    assert (info.key, info.size, info.sha256, info.content_type) == (
        "cases/c1/media/a.bin",
        len(data),
        sha(data),
        "video/mp4",
    )
    stat = store.stat("cases/c1/media/a.bin")
    assert (stat.size, stat.sha256, stat.content_type) == (len(data), sha(data), "video/mp4")
    assert read(store, "cases/c1/media/a.bin") == data

    # an iterable source, overwriting the same key
    info = store.put("cases/c1/media/a.bin", [b"abc", b"", b"def"], expected_sha256=sha(b"abcdef").upper())
    assert info.sha256 == sha(b"abcdef")
    assert read(store, "cases/c1/media/a.bin") == b"abcdef"
    assert store.stat("cases/c1/media/a.bin").size == 6


def test_download_streams_an_object_to_a_file(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one chunk
    store.put("cases/c1/media/a.bin", io.BytesIO(data))
    target = tmp_path / "copy.bin"
    assert store.download("cases/c1/media/a.bin", target) == len(data)
    assert target.read_bytes() == data
    missing = tmp_path / "missing.bin"
    with pytest.raises(ObjectNotFound):
        store.download("cases/c1/media/none.bin", missing)
    assert not missing.exists()


def test_empty_object(store: ObjectStore) -> None:
    info = store.put("empty", iter([]))
    assert (info.size, info.sha256) == (0, sha(b""))
    assert read(store, "empty") == b""


def test_range_reads(store: ObjectStore) -> None:
    data = bytes(range(256)) * 40
    store.put("r/data.bin", io.BytesIO(data))
    assert read(store, "r/data.bin", start=10, end=20) == data[10:20]
    assert read(store, "r/data.bin", start=100, chunk_size=7) == data[100:]
    assert b"".join(store.get("r/data.bin", start=3, end=500, chunk_size=7)) == data[3:500]
    assert read(store, "r/data.bin", end=1) == data[:1]
    assert read(store, "r/data.bin", start=5, end=5) == b""
    assert read(store, "r/data.bin", start=len(data) - 4, end=len(data) + 100) == data[-4:]
    assert read(store, "r/data.bin", start=len(data) + 10) == b""
    with pytest.raises(ValueError, match="range"):
        store.get("r/data.bin", start=9, end=3)


def test_stat_exists_delete_list_and_delete_prefix(store: ObjectStore) -> None:
    for key, size in [
        ("cases/c1/a.bin", 3),
        ("cases/c1/sub/b.bin", 5),
        ("cases/c10/x", 7),
        ("cases/c2/a.bin", 1),
    ]:
        store.put(key, [b"x" * size])

    assert [(i.key, i.size) for i in store.list("cases/c1/")] == [
        ("cases/c1/a.bin", 3),
        ("cases/c1/sub/b.bin", 5),
    ]
    assert [i.key for i in store.list("cases/c1")] == ["cases/c1/a.bin", "cases/c1/sub/b.bin", "cases/c10/x"]
    assert [i.key for i in store.list("")] == [
        "cases/c1/a.bin",
        "cases/c1/sub/b.bin",
        "cases/c10/x",
        "cases/c2/a.bin",
    ]
    assert list(store.list("nothing/")) == []

    assert store.exists("cases/c1/a.bin")
    assert not store.exists("cases/c1/missing")
    with pytest.raises(ObjectNotFound):
        store.stat("cases/c1/missing")
    with pytest.raises(ObjectNotFound):
        store.get("cases/c1/missing")  # raised at once, not at first iteration

    store.delete("cases/c1/a.bin")
    store.delete("cases/c1/a.bin")  # missing: no error
    assert not store.exists("cases/c1/a.bin")

    assert store.delete_prefix("cases/c1/") == 1
    assert [i.key for i in store.list("cases/")] == ["cases/c10/x", "cases/c2/a.bin"]
    assert store.delete_prefix("cases/") == 2
    assert list(store.list("")) == []
    with pytest.raises(InvalidKey):
        store.delete_prefix("")


@pytest.mark.parametrize(
    "key", ["../x", "/abs", "a//b", "a/../b", "a/./b", "", "a/", "a b", "a\\b", "k\x00", "é", "x" * 501]
)
def test_bad_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)
    with pytest.raises(InvalidKey):
        store.put(key, [b"data"])
    with pytest.raises(InvalidKey):
        store.stat(key)
    with pytest.raises(InvalidKey):
        store.get(key)
    with pytest.raises(InvalidKey):
        store.presign_get(key)
    with pytest.raises(InvalidKey):
        store.begin_upload(key)
    assert list(store.list("")) == []


def test_good_keys_are_accepted() -> None:
    for key in ["a", "cases/C-1/media/f_1.mp4", "x=1/y.2", "." + "a" * 10, "x" * 500]:
        assert validate_key(key) == key


@pytest.mark.parametrize("size", [1000, 6 * MiB], ids=["single", "multipart"])
def test_checksum_mismatch_leaves_nothing_stored(store: ObjectStore, size: int) -> None:
    data = os.urandom(size)
    with pytest.raises(ChecksumMismatch):
        store.put("bad/new.bin", chunks_of(data), expected_sha256=sha(b"something else"))
    assert not store.exists("bad/new.bin")
    assert list(store.list("")) == []

    store.put("bad/old.bin", [b"old"])
    with pytest.raises(ChecksumMismatch):
        store.put("bad/old.bin", chunks_of(data), expected_sha256=sha(b"something else"))
    assert read(store, "bad/old.bin") == b"old"
    assert store.stat("bad/old.bin").sha256 == sha(b"old")

    info = store.put("bad/new.bin", chunks_of(data), expected_sha256=sha(data))
    assert info.sha256 == store.stat("bad/new.bin").sha256 == sha(data)


def test_malformed_expected_sha256_is_refused(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="64 hex"):
        store.put("k", [b"x"], expected_sha256="abc")
    assert not store.exists("k")


def test_source_failing_mid_stream_leaves_nothing(store: ObjectStore) -> None:
    def broken() -> Iterator[bytes]:
        yield os.urandom(3 * MiB)
        yield os.urandom(3 * MiB)  # beyond one part on S3: a multipart upload is under way
        raise OSError("client went away")

    store.put("crash/k", [b"before"])
    with pytest.raises(OSError, match="went away"):
        store.put("crash/k", broken())
    with pytest.raises(OSError, match="went away"):
        store.put("crash/new", broken())
    assert read(store, "crash/k") == b"before"
    assert not store.exists("crash/new")


def test_multipart_object_round_trips_byte_identical(store: ObjectStore) -> None:
    data = os.urandom(12 * MiB + 123)
    info = store.put("big/video.mp4", chunks_of(data, 256 * 1024), content_type="video/mp4")
    assert (info.size, info.sha256) == (len(data), sha(data))
    stat = store.stat("big/video.mp4")
    assert (stat.size, stat.sha256, stat.content_type) == (len(data), sha(data), "video/mp4")
    assert read(store, "big/video.mp4") == data
    assert read(store, "big/video.mp4", start=PART - 10, end=PART + 10) == data[PART - 10 : PART + 10]


def test_resumable_session_survives_a_new_store_instance(make_store: StoreFactory) -> None:
    data = os.urandom(12 * MiB)
    pieces = [data[:PART], data[PART : 2 * PART], data[2 * PART :]]
    first = make_store()
    upload_id = first.begin_upload("up/clip.mov", content_type="video/quicktime")
    part = first.upload_part("up/clip.mov", upload_id, 1, pieces[0])
    assert part == PartInfo(1, PART, hashlib.md5(pieces[0], usedforsecurity=False).hexdigest())
    del first  # the client "drops" halfway

    second = make_store()
    assert second.list_parts("up/clip.mov", upload_id) == [part]
    assert not second.exists("up/clip.mov")
    second.upload_part("up/clip.mov", upload_id, 3, io.BytesIO(pieces[2]))
    second.upload_part("up/clip.mov", upload_id, 2, b"wrong bytes, replaced below")
    second.upload_part("up/clip.mov", upload_id, 2, io.BytesIO(pieces[1]))
    assert [(p.part_number, p.size) for p in second.list_parts("up/clip.mov", upload_id)] == [
        (1, PART),
        (2, PART),
        (3, len(pieces[2])),
    ]

    info = second.complete_upload("up/clip.mov", upload_id)
    assert (info.size, info.sha256, info.content_type) == (len(data), sha(data), "video/quicktime")
    assert second.stat("up/clip.mov").sha256 == sha(data)
    assert read(second, "up/clip.mov") == data
    with pytest.raises(ObjectNotFound):
        second.list_parts("up/clip.mov", upload_id)


def test_abort_removes_parts(store: ObjectStore, tmp_path: Path) -> None:
    upload_id = store.begin_upload("up/aborted.bin")
    store.upload_part("up/aborted.bin", upload_id, 1, os.urandom(1000))
    store.abort_upload("up/aborted.bin", upload_id)
    store.abort_upload("up/aborted.bin", upload_id)  # already gone: no error
    with pytest.raises(ObjectNotFound):
        store.list_parts("up/aborted.bin", upload_id)
    with pytest.raises(ObjectNotFound):  # a request that lost a race learns the upload ended
        store.upload_part("up/aborted.bin", upload_id, 2, os.urandom(1000))
    assert not store.exists("up/aborted.bin")
    if isinstance(store, LocalObjectStore):
        assert list((tmp_path / "objects" / ".uploads").iterdir()) == []


def test_complete_refuses_empty_sessions_and_small_middle_parts(store: ObjectStore) -> None:
    upload_id = store.begin_upload("up/small")
    with pytest.raises(ValueError, match="no parts"):
        store.complete_upload("up/small", upload_id)
    store.upload_part("up/small", upload_id, 1, b"a" * 1000)
    store.upload_part("up/small", upload_id, 2, b"b" * 1000)
    with pytest.raises(ValueError, match="at least"):
        store.complete_upload("up/small", upload_id)
    with pytest.raises(ValueError, match="part_number"):
        store.upload_part("up/small", upload_id, 0, b"x")
    assert not store.exists("up/small")
    store.abort_upload("up/small", upload_id)


def test_unknown_upload_id_is_not_found(store: ObjectStore) -> None:
    for upload_id in ["0" * 32, "../../etc"]:
        with pytest.raises(ObjectNotFound):
            store.list_parts("up/x", upload_id)
        with pytest.raises(ObjectNotFound):
            store.complete_upload("up/x", upload_id)


def test_local_upload_part_needs_a_session_of_that_key(local: LocalObjectStore) -> None:
    # (moto answers UploadPart to an unknown upload with HTTP 500, so this is checked locally only)
    with pytest.raises(ObjectNotFound):
        local.upload_part("up/x", "0" * 32, 1, b"data")
    upload_id = local.begin_upload("up/x")
    with pytest.raises(ObjectNotFound):
        local.upload_part("up/other", upload_id, 1, b"data")
    local.upload_part("up/x", upload_id, 1, b"data")


def test_health(store: ObjectStore) -> None:
    store.health()


# -- local adapter -----------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects", presign_secret=SECRET, public_base_url="http://aima.test/")


def test_local_put_streams_64_mib_in_constant_memory(local: LocalObjectStore) -> None:
    digest = hashlib.sha256()

    def generate() -> Iterator[bytes]:
        for _ in range(64):
            chunk = os.urandom(MiB)
            digest.update(chunk)
            yield chunk

    tracemalloc.start()
    try:
        info = local.put("big/stream.bin", generate())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == 64 * MiB
    assert info.sha256 == digest.hexdigest()
    assert peak < 4 * MiB, f"peak traced memory {peak / MiB:.1f} MiB"


def test_local_presigned_urls_verify(local: LocalObjectStore, tmp_path: Path) -> None:
    local.put("cases/c1/a.bin", [b"x"])
    url = local.presign_get("cases/c1/a.bin", expires_s=60)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://aima.test/api/v1/objects/cases/c1/a.bin"
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    expires, signature = int(query["expires"]), query["signature"]
    assert time.time() < expires <= time.time() + 61

    assert local.verify_presigned("cases/c1/a.bin", expires, signature)
    assert not local.verify_presigned("cases/c1/a.bin", expires + 3600, signature)  # edited expiry
    assert not local.verify_presigned("cases/c2/a.bin", expires, signature)  # another key
    edited = signature[:-1] + ("1" if signature[-1] == "0" else "0")
    assert not local.verify_presigned("cases/c1/a.bin", expires, edited)  # edited signature
    assert not local.verify_presigned("../etc/passwd", expires, signature)

    expired = parse_qs(urlsplit(local.presign_get("cases/c1/a.bin", expires_s=-1)).query)
    assert not local.verify_presigned("cases/c1/a.bin", int(expired["expires"][0]), expired["signature"][0])

    other = LocalObjectStore(
        tmp_path / "objects", presign_secret=b"another", public_base_url="http://aima.test"
    )
    assert not other.verify_presigned("cases/c1/a.bin", expires, signature)


def test_local_keeps_internal_folders_out_of_reach(local: LocalObjectStore, tmp_path: Path) -> None:
    local.put("a.bin", [b"x"])
    upload_id = local.begin_upload("b.bin")
    local.upload_part("b.bin", upload_id, 1, b"part")
    for key in [".meta/a.bin.json", ".uploads/x", ".tmp/y", ".presign-secret"]:
        with pytest.raises(InvalidKey):
            local.put(key, [b"evil"])
    assert [i.key for i in local.list("")] == ["a.bin"]
    assert [i.key for i in local.list(".")] == []


def test_local_refuses_a_key_that_escapes_through_a_symlink(local: LocalObjectStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "objects" / "link").symlink_to(outside)
    with pytest.raises(InvalidKey, match="outside"):
        local.put("link/x", [b"evil"])
    assert list(outside.iterdir()) == []


def test_local_distrusts_a_sidecar_of_replaced_bytes(local: LocalObjectStore, tmp_path: Path) -> None:
    local.put("a.bin", [b"original"])
    replacement = tmp_path / "replacement"
    replacement.write_bytes(b"replaced")
    os.replace(replacement, tmp_path / "objects" / "a.bin")
    assert local.stat("a.bin").sha256 is None
    assert local.stat("a.bin").size == len(b"replaced")


def test_local_object_and_folder_keys_collide_cleanly(local: LocalObjectStore) -> None:
    local.put("a", [b"file"])
    with pytest.raises(InvalidKey, match="collides"):
        local.put("a/b", [b"nested"])
    assert read(local, "a") == b"file"


def test_local_store_from_settings_keeps_its_presign_secret(tmp_path: Path) -> None:
    settings = load_settings(profile="embedded", data_dir=tmp_path / "aima")
    first = object_store_from_settings(settings)
    assert isinstance(first, LocalObjectStore)
    first.put("k", [b"v"])
    assert (tmp_path / "aima" / "objects" / "k").read_bytes() == b"v"
    query = parse_qs(urlsplit(first.presign_get("k")).query)
    second = object_store_from_settings(settings)
    assert isinstance(second, LocalObjectStore)
    assert second.verify_presigned("k", int(query["expires"][0]), query["signature"][0])


# -- S3 adapter --------------------------------------------------------------------------------


def test_s3_presigned_url_serves_the_bytes(s3_server: str) -> None:
    store = s3_store(s3_server, f"presign-{uuid.uuid4().hex[:12]}")
    store.ensure_bucket()
    data = os.urandom(5000)
    store.put("cases/c1/a.bin", [data])
    response = httpx.get(store.presign_get("cases/c1/a.bin", expires_s=60))
    assert response.status_code == 200
    assert response.content == data


def test_s3_store_from_settings(s3_server: str) -> None:
    settings = load_settings(
        profile="cluster",
        database_url="postgresql://postgres@127.0.0.1:5432/x",
        vector_uri="http://127.0.0.1:19530",
        documents_uri="mongodb://127.0.0.1:27017",
        cache_url="redis://127.0.0.1:6379/15",
        s3_endpoint_url=s3_server,
        s3_bucket=f"settings-{uuid.uuid4().hex[:12]}",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        key_encryption_secret="k" * 48,
    )
    store = object_store_from_settings(settings)
    assert isinstance(store, S3ObjectStore)
    store.ensure_bucket()
    store.put("k", [b"value"])
    assert read(store, "k") == b"value"


def test_s3_dead_endpoint_fails_quickly() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        store = s3_store(f"http://127.0.0.1:{sock.getsockname()[1]}", "nobody")
        started = time.monotonic()
        with pytest.raises(EndpointConnectionError):
            store.health()
    assert time.monotonic() - started < 10


def test_s3_records_sha256_metadata_and_aborts_failed_uploads(s3_server: str) -> None:
    bucket = f"meta-{uuid.uuid4().hex[:12]}"
    store = s3_store(s3_server, bucket)
    store.ensure_bucket()
    raw = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    small, big = os.urandom(1000), os.urandom(6 * MiB)
    store.put("small", [small])
    store.put("big", chunks_of(big))
    store.put("big-checked", chunks_of(big), expected_sha256=sha(big))
    for key, data in [("small", small), ("big", big), ("big-checked", big)]:
        assert raw.head_object(Bucket=bucket, Key=key)["Metadata"] == {"sha256": sha(data)}

    with pytest.raises(ChecksumMismatch):
        store.put("bad", chunks_of(big), expected_sha256=sha(b"other"))
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

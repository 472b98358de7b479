"""Object store in a local folder (embedded profile).

Layout under `root`: objects at `<key>`; sidecars `.meta/<key>.json` (sha256, content type, size
and the inode they describe, so a stale sidecar is never trusted); multipart sessions under
`.uploads/<upload_id>/`; temporary files under `.tmp/`. Every write goes to a temporary file on the
same filesystem, is fsynced and then renamed into place, so a crash never leaves half an object
under its final key.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from stat import S_ISREG
from typing import Any, BinaryIO

from aima.storage.objects import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
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

_META, _UPLOADS, _TMP, _SECRET = ".meta", ".uploads", ".tmp", ".presign-secret"
_RESERVED = frozenset({_META, _UPLOADS, _TMP, _SECRET})
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_SESSION = "upload.json"


class LocalObjectStore(ObjectStore):
    """`ObjectStore` over a folder; presigned URLs point at the API's `/api/v1/objects/{key}` route."""

    def __init__(self, root: Path, *, presign_secret: bytes, public_base_url: str) -> None:
        if not presign_secret:
            raise ValueError("presign_secret must not be empty")
        self._root = Path(root).resolve()
        self._secret = presign_secret
        self._base_url = public_base_url.rstrip("/")
        for folder in (self._root, self._root / _META, self._root / _UPLOADS, self._root / _TMP):
            folder.mkdir(parents=True, exist_ok=True)

    # -- objects -------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        source: BinaryIO | Iterable[bytes],
        *,
        content_type: str | None = None,
        expected_sha256: str | None = None,
    ) -> ObjectInfo:
        expected = normalize_sha256(expected_sha256)
        return self._store(key, iter_chunks(source), content_type, expected)

    def get(
        self, key: str, *, start: int = 0, end: int | None = None, chunk_size: int = CHUNK_SIZE
    ) -> Iterator[bytes]:
        check_range(start, end)
        try:
            handle = self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        return _read_range(handle, start, end, chunk_size)

    def stat(self, key: str) -> ObjectInfo:
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        if not S_ISREG(st.st_mode):
            raise ObjectNotFound(key)
        meta = _read_json(self._meta_path(key))
        if meta.get("inode") != st.st_ino or meta.get("size") != st.st_size:
            meta = {}
        return ObjectInfo(key, st.st_size, meta.get("sha256"), meta.get("content_type"))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        path = self._path(key)
        for target, top in ((path, self._root), (self._meta_path(key), self._root / _META)):
            try:
                target.unlink()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue
            _prune_empty(target.parent, top)

    def delete_prefix(self, prefix: str) -> int:
        if not validate_prefix(prefix):
            raise InvalidKey("delete_prefix needs a non-empty prefix")
        keys = builtins.list(self._keys(prefix))
        for key in keys:
            self.delete(key)
        return len(keys)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for key in self._keys(validate_prefix(prefix)):
            try:
                yield self.stat(key)
            except ObjectNotFound:
                continue

    def presign_get(self, key: str, expires_s: int = 900) -> str:
        validate_key(key)
        expires = int(time.time()) + expires_s
        return f"{self._base_url}/api/v1/objects/{key}?expires={expires}&signature={self._sign(key, expires)}"

    def verify_presigned(self, key: str, expires: int, signature: str) -> bool:
        """True if `signature` was made by `presign_get` for this key and `expires` has not passed."""
        try:
            validate_key(key)
        except InvalidKey:
            return False
        if expires < time.time():
            return False
        return hmac.compare_digest(self._sign(key, expires), signature)

    def health(self) -> None:
        fd, name = tempfile.mkstemp(dir=self._root / _TMP, prefix="health-")
        os.close(fd)
        os.unlink(name)

    # -- multipart sessions --------------------------------------------------------------------

    def begin_upload(self, key: str, *, content_type: str | None = None) -> str:
        self._path(key)
        upload_id = uuid.uuid4().hex
        folder = self._root / _UPLOADS / upload_id
        folder.mkdir()
        self._write_json(folder / _SESSION, {"key": key, "content_type": content_type})
        return upload_id

    def upload_part(self, key: str, upload_id: str, part_number: int, source: BinaryIO | bytes) -> PartInfo:
        validate_part_number(part_number)
        folder, _ = self._session(key, upload_id)
        md5, size = hashlib.md5(usedforsecurity=False), 0
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix="part-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in iter_chunks(source):
                    md5.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            part = PartInfo(part_number, size, md5.hexdigest())
            (folder / f"{part_number:05d}.json").unlink(missing_ok=True)
            os.replace(tmp_name, folder / f"{part_number:05d}.part")
            self._write_json(folder / f"{part_number:05d}.json", {"size": part.size, "etag": part.etag})
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return part

    def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        folder, _ = self._session(key, upload_id)
        parts = []
        for meta_path in sorted(folder.glob("[0-9]*.json")):
            meta = _read_json(meta_path)
            if meta:
                parts.append(PartInfo(int(meta_path.stem), int(meta["size"]), str(meta["etag"])))
        return parts

    def complete_upload(
        self, key: str, upload_id: str, parts: Sequence[PartInfo] | None = None
    ) -> ObjectInfo:
        folder, session = self._session(key, upload_id)
        stored = self.list_parts(key, upload_id)
        if parts is None:
            check_parts(stored)
            parts = stored
        else:
            parts = check_chosen(parts, stored)
        paths = [folder / f"{part.part_number:05d}.part" for part in parts]
        try:
            info = self._store(key, _concat(paths), session.get("content_type"), None)
        except FileNotFoundError as exc:  # completed or aborted meanwhile by another process
            raise ObjectNotFound(f"upload {upload_id} ended while it was being completed") from exc
        shutil.rmtree(folder, ignore_errors=True)
        return info

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            folder, _ = self._session(key, upload_id)
        except ObjectNotFound:
            return
        shutil.rmtree(folder, ignore_errors=True)

    # -- internals -----------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        validate_key(key)
        if key.split("/", 1)[0] in _RESERVED:
            raise InvalidKey(f"key {key!r} uses a reserved name")
        path = (self._root / key).resolve()
        if not path.is_relative_to(self._root):
            raise InvalidKey(f"key {key!r} resolves outside the store")
        return path

    def _meta_path(self, key: str) -> Path:
        return self._root / _META / f"{key}.json"

    def _session(self, key: str, upload_id: str) -> tuple[Path, dict[str, Any]]:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise ObjectNotFound(f"no upload {upload_id!r}")
        folder = self._root / _UPLOADS / upload_id
        session = _read_json(folder / _SESSION)
        if session.get("key") != key:
            raise ObjectNotFound(f"no upload {upload_id!r} for key {key!r}")
        return folder, session

    def _keys(self, prefix: str) -> builtins.list[str]:
        found = []
        for folder, dirs, files in os.walk(self._root / prefix.rpartition("/")[0]):
            relative = Path(folder).relative_to(self._root)
            if relative == Path("."):
                dirs[:] = [name for name in dirs if name not in _RESERVED]
            for name in files:
                key = (relative / name).as_posix()
                if key.startswith(prefix) and _is_public_key(key):
                    found.append(key)
        return sorted(found)

    def _store(
        self, key: str, chunks: Iterable[bytes], content_type: str | None, expected: str | None
    ) -> ObjectInfo:
        """Write `chunks` to a temp file, check the hash, record the sidecar, then rename into place."""
        path = self._path(key)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        digest, size = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=self._root / _TMP, prefix="obj-")
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            sha256 = verify_sha256(digest, expected)
            meta = {"sha256": sha256, "content_type": content_type, "size": size}
            self._write_json(self._meta_path(key), {**meta, "inode": os.stat(tmp_name).st_ino})
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_name, path)
            except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                raise InvalidKey(f"key {key!r} collides with an existing object or folder") from exc
            _fsync_dir(path.parent)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return ObjectInfo(key, size, sha256, content_type)

    def _write_json(self, path: Path, data: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self._root / _TMP, prefix="json-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def _sign(self, key: str, expires: int) -> str:
        return hmac.new(self._secret, f"{key}\n{expires}".encode(), hashlib.sha256).hexdigest()

    # -- leftovers of crashes (the retention sweep calls this) ---------------------------------

    def remove_leftovers(
        self, *, written_before: float, uploads_before: float, keep_uploads: Iterable[str] = ()
    ) -> builtins.list[tuple[str, int]]:
        """Remove what a killed process left in the store's private folders; returns the name
        (relative to the root) and size of each removed.

        * files under ``.tmp/`` last written before ``written_before`` (a Unix time): an object or
          sidecar being written when its process died (a write in progress keeps its file's time fresh);
        * multipart folders under ``.uploads/`` begun before ``uploads_before`` whose id is not in
          ``keep_uploads`` (the ids live sessions still refer to).
        """
        removed: builtins.list[tuple[str, int]] = []
        for path in sorted((self._root / _TMP).iterdir()):
            st = path.lstat()
            if S_ISREG(st.st_mode) and st.st_mtime < written_before:
                path.unlink(missing_ok=True)
                removed.append((f"{_TMP}/{path.name}", st.st_size))
        keep = frozenset(keep_uploads)
        for folder in sorted((self._root / _UPLOADS).iterdir()):
            if folder.name in keep or not _UPLOAD_ID.fullmatch(folder.name) or folder.is_symlink():
                continue
            begun = folder / _SESSION
            started = (begun if begun.exists() else folder).lstat().st_mtime
            if started < uploads_before:
                size = sum(p.lstat().st_size for p in folder.iterdir())
                shutil.rmtree(folder)
                removed.append((f"{_UPLOADS}/{folder.name}", size))
        return removed


def load_or_create_secret(root: Path) -> bytes:
    """The presign secret kept in `<root>/.presign-secret`, created (mode 0600) on first use."""
    path = root / _SECRET
    if not path.exists():
        (root / _TMP).mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=root / _TMP, prefix="secret-")
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp_name)
    return path.read_text().strip().encode()


def _read_range(handle: BinaryIO, start: int, end: int | None, chunk_size: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = None if end is None else end - start
        while remaining is None or remaining > 0:
            chunk = handle.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def _concat(paths: Iterable[Path]) -> Iterator[bytes]:
    for path in paths:
        with path.open("rb") as handle:
            yield from iter_chunks(handle)


def _is_public_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return key.split("/", 1)[0] not in _RESERVED


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune_empty(folder: Path, top: Path) -> None:
    while folder != top and folder.is_relative_to(top):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent

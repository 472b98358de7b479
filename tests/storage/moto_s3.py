"""moto's S3 server as the tests run it, answering like S3 where moto 5.2 does not.

S3 answers ``UploadPart`` and ``CompleteMultipartUpload`` on an upload that was completed or
aborted meanwhile with 404 ``NoSuchUpload``; moto looks the upload up unguarded and answers 500
(a ``KeyError``), which boto3 retries and then raises as a server error. The ingest race tests
depend on the real answer: the request that lost the race must learn the upload ended. Run as
``python -m tests.storage.moto_s3 -H HOST -p PORT`` (the arguments of ``moto_server``)."""

from __future__ import annotations

from typing import Any

from moto.s3.exceptions import NoSuchUpload
from moto.s3.models import S3Backend
from moto.server import main


def _guarded(name: str) -> None:
    original = getattr(S3Backend, name)

    def method(self: S3Backend, bucket_name: str, multipart_id: str, *args: Any, **kwargs: Any) -> Any:
        if multipart_id not in self.get_bucket(bucket_name).multiparts:
            raise NoSuchUpload(upload_id=multipart_id)
        return original(self, bucket_name, multipart_id, *args, **kwargs)

    setattr(S3Backend, name, method)


for _name in ("upload_part", "complete_multipart_upload"):
    _guarded(_name)

if __name__ == "__main__":
    main()

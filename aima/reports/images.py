"""The pictures a rendered report shows: thumbnails and person crops, blurred for sensitive files.

A file the sensitivity step scored at or above the tenant's threshold (``ReportFile.sensitive``)
shows only blurred derivatives (`aima.storage.blurred`), as the gateway serves them; opening an
original is a separate, audited act in the gateway, never part of an export.
"""

from __future__ import annotations

from aima.reports.model import CaseReport
from aima.storage.blurred import BlurredImages
from aima.storage.objects import ObjectNotFound, ObjectStore


class ReportImages:
    """``thumbnail(media_id)`` and ``crop(object_key)`` for `aima.reports.exports`."""

    def __init__(self, objects: ObjectStore, report: CaseReport) -> None:
        self._objects = objects
        self._blurred = BlurredImages(objects)
        self._case_id = report.case_id
        self._thumbnails = {f.media_id: f.thumbnail_key for f in report.files if f.thumbnail_key}
        self._sensitive = {f.media_id for f in report.files if f.sensitive}
        self._crops = {
            a.crop_key: a.media_id for person in report.persons for a in person.appearances if a.crop_key
        }

    def thumbnail(self, media_id: str) -> bytes | None:
        key = self._thumbnails.get(media_id)
        return None if key is None else self._image(media_id, key)

    def crop(self, key: str) -> bytes | None:
        media_id = self._crops.get(key)
        return None if media_id is None else self._image(media_id, key)

    def _image(self, media_id: str, key: str) -> bytes | None:
        try:
            if media_id in self._sensitive:
                return self._blurred.blurred(self._case_id, media_id, key)
            return b"".join(self._objects.get(key))
        except ObjectNotFound:
            return None

"""Blurred derivatives of a media file's images (frames, thumbnail, preview, face crops), made the
first time an image is served blurred and kept in the object store.

Key: ``cases/{case_id}/media/{media_id}/blurred/{RECIPE}-{sha256 of the original}.jpg``: under the
file's own prefix, so deleting the case removes them, and the retention sweep purges them with the
other intermediates (they are made again when needed). Named by the bytes they were made from, so a
changed original (a file probed again) never meets a stale derivative; a new recipe gets new keys.

Recipe ``b1`` (`blur`): EXIF orientation applied, RGB; shrunk so that the longer edge is `SHRUNK_EDGE`
pixels (each pixel the mean of a block) and Gaussian-blurred there; enlarged eightfold and blurred
again to smooth the blocks, then enlarged to the original size; JPEG. All that survives is a 24-pixel
picture of the colours: no face, text or shape can be recovered from it. About 10 ms for a 720p frame.
An original that cannot be decoded is answered with a plain grey image (never itself), not cached.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aima.storage.objects import ObjectNotFound, ObjectStore

RECIPE = "b1"
SHRUNK_EDGE = 24
SHRUNK_RADIUS = 1.5
SMOOTH_FACTOR = 8
SMOOTH_RADIUS = 6
QUALITY = 75
MAX_SOURCE_BYTES = 64 * 1024 * 1024
"""Larger originals are not blurred (frames and crops are far smaller): a grey image stands in."""
PLACEHOLDER_SIZE = (320, 180)
_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)
"""EXIF orientations that swap width and height."""

if TYPE_CHECKING:
    from PIL import Image


def media_prefix(case_id: str, media_id: str) -> str:
    """Where a media file's objects live: its original and everything derived from it."""
    return f"cases/{case_id}/media/{media_id}"


def blurred_key(case_id: str, media_id: str, sha256: str) -> str:
    """Where the blurred derivative of the image with this SHA-256 lies."""
    return f"{media_prefix(case_id, media_id)}/blurred/{RECIPE}-{sha256}.jpg"


class UnreadableImage(ValueError):
    """The original is no image Pillow can decode."""


def blur(original: bytes) -> bytes:
    """The blurred derivative of an encoded image (recipe in the module docstring), as JPEG."""
    from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(original)) as opened:
            width, height = opened.size
            if opened.getexif().get(_ORIENTATION, 1) in _TURNED:
                width, height = height, width
            opened.draft("RGB", (max(1, width // SHRUNK_EDGE), max(1, height // SHRUNK_EDGE)))
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UnreadableImage(f"{type(exc).__name__}: {exc}") from exc
    scale = max(width, height) / SHRUNK_EDGE
    shrunk = image.resize(
        (max(1, round(width / scale)), max(1, round(height / scale))), Image.Resampling.BOX
    ).filter(ImageFilter.GaussianBlur(SHRUNK_RADIUS))
    # smoothed at 8x the shrunk size, where a blur is cheap, then enlarged: no blocks, no edges
    middle = shrunk.resize(
        (shrunk.width * SMOOTH_FACTOR, shrunk.height * SMOOTH_FACTOR), Image.Resampling.BICUBIC
    )
    middle = middle.filter(ImageFilter.GaussianBlur(SMOOTH_RADIUS))
    return _jpeg(middle.resize((width, height), Image.Resampling.BILINEAR))


def placeholder() -> bytes:
    """A plain grey image: what stands in for an original that cannot be blurred."""
    from PIL import Image

    return _jpeg(Image.new("RGB", PLACEHOLDER_SIZE, (128, 128, 128)))


class BlurredImages:
    """The blurred derivatives of the images in an object store (see module docstring)."""

    def __init__(self, objects: ObjectStore) -> None:
        self._objects = objects

    def blurred(self, case_id: str, media_id: str, key: str) -> bytes:
        """The blurred derivative of the image at ``key`` (of that media file), made and stored on
        first use. `ObjectNotFound` if the original is missing."""
        info = self._objects.stat(key)
        if info.sha256 is not None:
            cached = _read(self._objects, blurred_key(case_id, media_id, info.sha256))
            if cached is not None:
                return cached
        if info.size > MAX_SOURCE_BYTES:
            return placeholder()
        original = b"".join(self._objects.get(key))
        try:
            made = blur(original)
        except UnreadableImage:
            return placeholder()
        sha256 = info.sha256 or hashlib.sha256(original).hexdigest()
        self._objects.put(blurred_key(case_id, media_id, sha256), io.BytesIO(made), content_type="image/jpeg")
        return made


def _read(objects: ObjectStore, key: str) -> bytes | None:
    try:
        chunks: Iterator[bytes] = objects.get(key)
    except ObjectNotFound:
        return None
    return b"".join(chunks)


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=QUALITY)
    return out.getvalue()

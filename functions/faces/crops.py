"""A face's crop: its box enlarged around its centre, cut from the upright frame, as JPEG bytes."""

from __future__ import annotations

import io
from pathlib import Path

from inference.cpu.images import open_upright
from inference.tasks.common import Box

CROP_QUALITY = 90


def crop_jpeg(frame: Path, box: Box, context: float) -> bytes:
    """The square of ``context`` times the box's longer side around its centre, clipped to the frame."""
    image = open_upright(frame)
    side = max(box.width, box.height) * context
    cx, cy = box.x + box.width / 2, box.y + box.height / 2
    left, top = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    right, bottom = min(image.width, int(cx + side / 2)), min(image.height, int(cy + side / 2))
    out = io.BytesIO()
    image.crop((left, top, max(right, left + 1), max(bottom, top + 1))).save(
        out, "JPEG", quality=CROP_QUALITY
    )
    return out.getvalue()

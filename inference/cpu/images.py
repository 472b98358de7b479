"""Images as the CPU models read them: upright by their EXIF orientation, RGB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageOps


def open_upright(path: Path) -> Image.Image:
    """The image at ``path`` turned upright by its EXIF orientation, as RGB (OSError if unreadable)."""
    with Image.open(path) as opened:
        upright = ImageOps.exif_transpose(opened)
        return upright.convert("RGB")


def load_upright(path: Path) -> Any:
    """`open_upright` as a contiguous ``uint8`` array of shape (height, width, 3)."""
    import numpy as np

    return np.ascontiguousarray(np.asarray(open_upright(path), dtype=np.uint8))

"""Face photographs for tests, benchmarks and the demo media, from packages that ship them.

AIMA's face steps are tested and tuned on real photographs, never on the sample images bundled
with insightface (kept for an independent evaluation). These come from two packages on PyPI,
downloaded once with pip (which honours the machine's index and proxy settings), checked against
their SHA-256 and cached:

* ``face_recognition`` 1.3.0 (MIT), whose source distribution ships its test photographs: five
  official portraits of Barack Obama (two of them partly covered) and one of Joe Biden, works of
  the US government;
* ``scikit-image`` 0.26.0 (BSD), whose wheel ships ``astronaut.png``, NASA's portrait of Eileen
  Collins (public domain);
* ``matplotlib`` (installed with the vision group) ships ``grace_hopper.jpg``, a US Navy portrait
  of Grace Hopper (public domain).

Four people, nine photographs: `FaceSamples.people` maps a person to their photographs.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SDIST = "face_recognition-1.3.0.tar.gz"
_SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
_WHEEL = "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
_WHEEL_SHA256 = "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"

PEOPLE: dict[str, tuple[str, ...]] = {
    "obama": ("obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"),
    "biden": ("biden.jpg",),
    "collins": ("astronaut.png",),
    "hopper": ("grace_hopper.jpg",),
}
"""Person -> the file names of their photographs in the cache folder."""


class SamplesUnavailable(RuntimeError):
    """The photographs could not be fetched (no index reachable, or a checksum mismatch)."""


@dataclass(frozen=True)
class FaceSamples:
    """The cached photographs."""

    folder: Path

    @property
    def people(self) -> dict[str, list[Path]]:
        return {name: [self.folder / file for file in files] for name, files in PEOPLE.items()}

    def photo(self, name: str) -> Path:
        """The photograph ``name`` (a file name of `PEOPLE`)."""
        path = self.folder / name
        if not path.is_file():
            raise FileNotFoundError(name)
        return path

    @property
    def portraits(self) -> dict[str, Path]:
        """One unobstructed photograph per person."""
        return {name: files[0] for name, files in self.people.items()}


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/aima/faces`` (``~/.cache/aima/faces``)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aima" / "faces"


def face_samples(cache: Path | None = None) -> FaceSamples:
    """The photographs, fetched into ``cache`` (`default_cache`) on first use."""
    folder = cache or default_cache()
    wanted = [file for files in PEOPLE.values() for file in files]
    if all((folder / file).is_file() for file in wanted):
        return FaceSamples(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="aima-faces-", dir=folder) as tmp:
        work = Path(tmp)
        sdist = _download(work, "face_recognition==1.3.0", _SDIST, _SDIST_SHA256, binary=False)
        with tarfile.open(sdist) as archive:
            for member in archive.getmembers():
                name = Path(member.name).name
                if "/tests/test_images/" in member.name and name in wanted and member.isfile():
                    source = archive.extractfile(member)
                    if source is not None:
                        (work / name).write_bytes(source.read())
        wheel = _download(work, "scikit-image==0.26.0", _WHEEL, _WHEEL_SHA256, binary=True)
        with zipfile.ZipFile(wheel) as archive:
            (work / "astronaut.png").write_bytes(archive.read("skimage/data/astronaut.png"))
        shutil.copyfile(_matplotlib_sample("grace_hopper.jpg"), work / "grace_hopper.jpg")
        for file in wanted:
            if not (work / file).is_file():
                raise SamplesUnavailable(f"{file} is missing from the downloaded packages")
            (work / file).replace(folder / file)
    return FaceSamples(folder)


def _download(work: Path, requirement: str, file: str, sha256: str, *, binary: bool) -> Path:
    kind = ["--only-binary", ":all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(work), requirement]
    command += kind if binary else ["--no-binary", ":all:"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    path = work / file
    if done.returncode != 0 or not path.is_file():
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SamplesUnavailable(f"pip could not download {requirement}: {reason}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise SamplesUnavailable(f"{file} has SHA-256 {digest}, expected {sha256}")
    return path


def _matplotlib_sample(name: str) -> Path:
    try:
        import matplotlib
    except ImportError as exc:
        raise SamplesUnavailable("matplotlib (the vision group) is not installed") from exc
    path = Path(matplotlib.get_data_path()) / "sample_data" / name
    if not path.is_file():
        raise SamplesUnavailable(f"matplotlib has no sample {name}")
    return path


# --- scenes with degraded faces ------------------------------------------------------------------

DEGRADATIONS = ("plain", "quarter", "blur", "jpeg", "rotate", "occlude")
"""How a face is made harder to find: as it is, at a quarter of its size, blurred, strongly
compressed, turned by 20-30 degrees, or with its lower part covered."""


@dataclass(frozen=True)
class PlacedFace:
    """A face put into a scene: whose, how degraded, its centre and its height in pixels."""

    person: str
    degradation: str
    x: float
    y: float
    height: float

    def inside(self, x: float, y: float, width: float, height: float) -> bool:
        """Whether the face's centre lies in the box."""
        return x <= self.x <= x + width and y <= self.y <= y + height


@dataclass(frozen=True)
class Head:
    """A head cut from a photograph: the image and the height of the face in it."""

    person: str
    image: Any
    face_px: float


def heads(samples: FaceSamples, people: Sequence[str] | None = None) -> list[Head]:
    """One head per photograph (of ``people``), cut around the face dlib's HOG finds in it."""
    import dlib
    import numpy as np
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    found = []
    for person, files in samples.people.items():
        if people is not None and person not in people:
            continue
        for file in files:
            image = Image.open(file).convert("RGB")
            boxes = detector(np.asarray(image), 0)
            if not boxes:
                continue
            box = max(boxes, key=lambda b: b.width())
            cx, cy, side = (box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2, box.width()
            crop = image.crop((int(cx - side), int(cy - 1.1 * side), int(cx + side), int(cy + 1.1 * side)))
            found.append(Head(person, crop, float(side)))
    return found


def degrade(head: Head, degradation: str, face_px: float, rng: random.Random) -> Any:
    """The head scaled so its face is ``face_px`` high, then degraded (`DEGRADATIONS`)."""
    from PIL import Image, ImageDraw, ImageFilter

    scale = face_px / head.face_px
    size = (max(8, int(head.image.width * scale)), max(8, int(head.image.height * scale)))
    image = head.image.resize(size, Image.Resampling.BILINEAR)
    if degradation == "blur":
        image = image.filter(ImageFilter.GaussianBlur(face_px / 40))
    elif degradation == "rotate":
        image = image.rotate(rng.choice([-30, -20, 20, 30]), resample=Image.Resampling.BILINEAR)
    elif degradation == "occlude":
        pen = ImageDraw.Draw(image)
        pen.rectangle((0, int(image.height * 0.62), image.width, image.height), fill=(40, 40, 60))
    elif degradation == "jpeg":
        image = _jpeg(image, 8)
    return image


def scene(
    pool: Sequence[Head], seed: int, *, faces: int = 4, size: tuple[int, int] = (1280, 720)
) -> tuple[Any, list[PlacedFace]]:
    """A frame of ``size`` with ``faces`` heads from ``pool`` on a calm background, each degraded in
    turn (`DEGRADATIONS`); quarter-scale faces are 36-52 pixels high, the others 110-150."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = random.Random(seed)
    noise = np.random.default_rng(seed).random((size[1], size[0], 3)) * 60 + 90
    image = Image.fromarray(noise.astype("uint8")).filter(ImageFilter.GaussianBlur(8))
    columns, rows = max(1, size[0] // 320), max(1, size[1] // 340)
    slots = [(40 + 320 * c, 60 + 340 * r) for c in range(columns) for r in range(rows)]
    rng.shuffle(slots)
    placed = []
    for i in range(min(faces, len(slots))):
        head = rng.choice(pool)
        degradation = DEGRADATIONS[(seed * faces + i) % len(DEGRADATIONS)]
        face_px = rng.choice([36, 44, 52]) if degradation == "quarter" else rng.choice([110, 130, 150])
        picture = degrade(head, degradation, face_px, rng)
        x, y = slots[i][0] + rng.randint(0, 40), slots[i][1] + rng.randint(0, 40)
        image.paste(picture, (x, y))
        placed.append(
            PlacedFace(head.person, degradation, x + picture.width / 2, y + picture.height / 2, face_px)
        )
    return image, placed


def walk(head: Head, frames: int, *, size: tuple[int, int] = (1280, 720), face_px: float = 120) -> list[Any]:
    """``frames`` frames of one head crossing the picture from left to right on a plain background."""
    from PIL import Image

    picture = degrade(head, "plain", face_px, random.Random(0))
    out = []
    for n in range(frames):
        frame = Image.new("RGB", size, (118, 124, 130))
        x = int((size[0] - picture.width) * n / max(1, frames - 1))
        frame.paste(picture, (x, (size[1] - picture.height) // 2))
        out.append(frame)
    return out


def write_video(frames: Sequence[Any], path: Path, *, fps: float = 1.0, crf: int = 30) -> Path:
    """The frames as an H.264 MP4 (``crf`` 30: visibly compressed). Needs ffmpeg."""
    with tempfile.TemporaryDirectory(prefix="aima-video-") as tmp:
        for n, frame in enumerate(frames):
            frame.save(Path(tmp) / f"{n:05d}.png")
        argv = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-framerate", str(fps)]
        argv += [
            "-i",
            str(Path(tmp) / "%05d.png"),
            "-c:v",
            "libx264",
            "-crf",
            str(crf),
            "-pix_fmt",
            "yuv420p",
        ]
        subprocess.run([*argv, str(path)], check=True, capture_output=True, timeout=300)
    return path


def _jpeg(image: Any, quality: int) -> Any:
    import io

    from PIL import Image

    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def write_face_samples(directory: Path, samples: FaceSamples | None = None) -> list[Path]:
    """Sample media with people in them: ``people.jpg`` (three faces, one of them degraded) and
    ``walk.mp4`` (one person crossing the picture, then a second one). Needs ffmpeg for the video."""
    found = samples or face_samples()
    pool = heads(found, ["obama", "biden", "hopper"])
    photo, _ = scene(pool, 2, faces=3)
    photo_path = directory / "people.jpg"
    photo.save(photo_path, quality=90)
    paths = [photo_path]
    if shutil.which("ffmpeg"):
        biden = next(head for head in pool if head.person == "biden")
        hopper = next(head for head in pool if head.person == "hopper")
        frames = walk(biden, 6) + walk(hopper, 4)
        paths.append(write_video(frames, directory / "walk.mp4", fps=1.0))
    return paths

"""The dlib + MediaPipe face analyzer on shipped photographs and on scenes with degraded faces."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from aima.samples_faces import FaceSamples, Head, scene
from inference.cpu.faces import DlibFaceAnalyzer
from inference.tasks.vision import FaceInput


def similarity(a: list[float] | None, b: list[float] | None) -> float:
    assert a is not None
    assert b is not None
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_each_portrait_has_one_face_with_five_landmarks_and_a_unit_vector(
    analyzer: DlibFaceAnalyzer, samples: FaceSamples
) -> None:
    for person, path in samples.portraits.items():
        found = analyzer.predict(FaceInput(path=path, thorough=True))
        assert len(found.faces) == 1, person
        face = found.faces[0]
        assert len(face.landmarks) == 5
        assert face.embedding is not None
        assert len(face.embedding) == 128
        assert math.isclose(math.sqrt(sum(v * v for v in face.embedding)), 1.0, rel_tol=1e-4)
        assert face.quality is not None
        assert face.quality > 0.6
        assert found.width
        assert found.height


def test_the_same_person_is_nearer_than_anyone_else(analyzer: DlibFaceAnalyzer, samples: FaceSamples) -> None:
    def vector(name: str) -> list[float] | None:
        (face,) = analyzer.predict(FaceInput(path=samples.photo(name))).faces
        return face.embedding

    obama, obama2, biden, hopper = (
        vector(n) for n in ("obama.jpg", "obama2.jpg", "biden.jpg", "grace_hopper.jpg")
    )
    same = similarity(obama, obama2)
    assert same > 0.92
    assert similarity(obama, biden) < same - 0.05
    assert similarity(obama, hopper) < same - 0.05


def test_the_exif_orientation_is_applied(
    analyzer: DlibFaceAnalyzer, samples: FaceSamples, tmp_path: Path
) -> None:
    upright = Image.open(samples.photo("grace_hopper.jpg")).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    stored.save(tmp_path / "sideways.jpg", exif=exif, quality=95)
    upright.save(tmp_path / "upright.jpg", quality=95)
    (turned,) = analyzer.predict(FaceInput(path=tmp_path / "sideways.jpg")).faces
    (plain,) = analyzer.predict(FaceInput(path=tmp_path / "upright.jpg")).faces
    assert abs(turned.box.x - plain.box.x) < 4
    assert abs(turned.box.y - plain.box.y) < 4
    assert similarity(turned.embedding, plain.embedding) > 0.99


def test_degraded_faces_are_found_and_an_empty_scene_has_none(
    analyzer: DlibFaceAnalyzer, pool: list[Head], tmp_path: Path
) -> None:
    placed_total = found_total = 0
    for seed in range(6):
        image, placed = scene(pool, seed)
        image.save(tmp_path / f"{seed}.jpg", quality=92)
        faces = analyzer.predict(FaceInput(path=tmp_path / f"{seed}.jpg")).faces
        placed_total += len(placed)
        found_total += sum(
            any(p.inside(f.box.x, f.box.y, f.box.width, f.box.height) for f in faces) for p in placed
        )
        assert len(faces) <= len(placed)  # nothing found that was not put there
    assert found_total / placed_total >= 0.9
    empty, _ = scene(pool, 0, faces=0)
    empty.save(tmp_path / "empty.jpg")
    assert analyzer.predict(FaceInput(path=tmp_path / "empty.jpg", thorough=True)).faces == []


def test_a_region_gets_a_closer_look_only_when_asked(
    analyzer: DlibFaceAnalyzer, samples: FaceSamples
) -> None:
    path = samples.photo("biden.jpg")
    (face,) = analyzer.predict(FaceInput(path=path)).faces
    again = analyzer.predict(FaceInput(path=path, fast=False, regions=[face.box])).faces
    assert len(again) == 1
    assert again[0].detector in ("mediapipe", "hog")
    assert similarity(again[0].embedding, face.embedding) > 0.95
    assert analyzer.predict(FaceInput(path=path, fast=False)).faces == []

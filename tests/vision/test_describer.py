"""The vision describer against the protocol-checking server: the request as the protocol has it,
frames batched, an invalid answer asked again once with the error, then the frame failed; a slow or
failing endpoint is unavailable, refused credentials are "not configured"."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from inference.errors import InvalidModelOutput, ModelNotConfigured, ModelUnavailable
from inference.remote.openai_vision import SCHEMA_NAME, OpenAIFramesDescriber
from inference.tasks.vision import SceneDescription, VisionInput
from tests.vision.conftest import BLUE, GREEN, RED, describer, frame_png
from tests.vision.openai_vision_server import INVALID, Fault, VisionServer

CONTEXT = "Reported missing person; look for restraints."


def frames(folder: Path, *colours: tuple[int, int, int], context: str | None = CONTEXT) -> list[VisionInput]:
    made = []
    for index, colour in enumerate(colours):
        path = folder / f"frame-{index}.png"
        path.write_bytes(frame_png(colour))
        made.append(VisionInput(path=path, frame_id=f"f{index}", timestamp_s=float(index), context=context))
    return made


def test_a_frame_is_sent_as_the_protocol_has_it_and_described(
    tmp_path: Path, server: VisionServer, endpoint: str
) -> None:
    model = describer(endpoint, server, options={"max_tokens": 800, "seed": 3})
    assert isinstance(model, OpenAIFramesDescriber)
    [frame] = frames(tmp_path, RED)
    [found] = model.describe([frame])
    assert isinstance(found, SceneDescription)
    assert (found.scene, found.people_count, found.objects) == ("a bare room", 1, ["chair", "cable ties"])
    assert found.people[0].posture == "sitting, hands behind the back"
    [restraint] = found.restraint_indicators
    assert (restraint.type, restraint.confidence, restraint.frame) == ("cable_ties", 0.82, 1)
    assert restraint.body_position == "wrists behind the back"
    assert [cue.cue for cue in found.distress_cues] == ["crying"]

    [seen] = server.seen
    assert seen.headers["authorization"] == "Bearer test-key"
    assert seen.headers["user-agent"].startswith("aima/")
    body = seen.body
    assert (body["model"], body["temperature"], body["max_tokens"], body["seed"]) == (
        server.model,
        0.0,
        800,
        3,
    )
    spec = body["response_format"]["json_schema"]
    assert (body["response_format"]["type"], spec["name"], spec["strict"]) == (
        "json_schema",
        SCHEMA_NAME,
        True,
    )
    item = spec["schema"]["properties"]["frames"]["items"]
    restraint_schema = item["properties"]["restraint_indicators"]["items"]
    assert restraint_schema["properties"]["type"]["enum"] == [
        "handcuffs",
        "cable_ties",
        "rope",
        "tape",
        "gag",
        "other",
    ]
    system, user = body["messages"]
    assert system["role"] == "system"
    assert "never a verdict" in system["content"]
    texts = [part["text"] for part in user["content"] if part["type"] == "text"]
    assert any(CONTEXT in text and "not a fact" in text for text in texts)  # the case's context prompt
    [image] = [part for part in user["content"] if part["type"] == "image_url"]
    prefix, _, data = image["image_url"]["url"].partition(",")
    assert prefix == "data:image/png;base64"
    assert base64.b64decode(data) == frame.path.read_bytes()
    assert seen.colours == [RED]


def test_frames_are_batched_as_the_endpoint_allows(
    tmp_path: Path, server: VisionServer, endpoint: str
) -> None:
    server.max_images = 3
    model = describer(endpoint, server, options={"max_images_per_request": 3})
    colours = [RED, BLUE, GREEN, BLUE, RED]
    found = model.describe(frames(tmp_path, *colours))
    assert [len(seen.colours) for seen in server.seen] == [3, 2]
    assert [seen.colours for seen in server.seen] == [colours[:3], colours[3:]]
    scenes = [item.scene for item in found if isinstance(item, SceneDescription)]
    assert scenes == ["a bare room", "an empty room", "a floor", "an empty room", "a bare room"]
    # each frame's indicators are its own, numbered as sent in its request
    assert isinstance(found[4], SceneDescription)
    assert [r.frame for r in found[4].restraint_indicators] == [2]


def test_the_server_refuses_more_images_than_it_takes(
    tmp_path: Path, server: VisionServer, endpoint: str
) -> None:
    model = describer(endpoint, server, options={"max_images_per_request": 2})  # the server takes 1
    found = model.describe(frames(tmp_path, RED, BLUE))
    assert all(isinstance(item, InvalidModelOutput) for item in found)
    assert "At most 1 image" in str(found[0])
    assert server.seen == []  # refused before the "model" saw it


def test_an_invalid_answer_is_asked_again_once_with_the_error(
    tmp_path: Path, server: VisionServer, endpoint: str
) -> None:
    server.faults.append(Fault(kind=INVALID))
    model = describer(endpoint, server)
    [found] = model.describe(frames(tmp_path, GREEN))
    assert isinstance(found, SceneDescription)
    assert found.restraint_indicators[0].type == "gag"
    first, second = server.seen
    assert first.body["messages"] == second.body["messages"][:2]
    assistant, follow_up = second.body["messages"][2:]
    assert assistant["role"] == "assistant"
    assert json.loads(assistant["content"])["frames"][0]["restraint_indicators"][0]["type"] == "chains"
    assert follow_up["role"] == "user"
    assert "not valid" in follow_up["content"]
    assert SCHEMA_NAME in follow_up["content"]  # the validation error itself
    assert second.colours == [GREEN]  # the same image again


def test_invalid_twice_fails_that_frame_and_invents_nothing(
    tmp_path: Path, server: VisionServer, endpoint: str
) -> None:
    server.faults.extend([Fault(kind=INVALID), Fault(kind=INVALID)])
    model = describer(endpoint, server)
    first, second = model.describe(frames(tmp_path, RED, BLUE))
    assert isinstance(first, InvalidModelOutput)
    assert "asked again" in first.reason
    assert first.task == "vision_describer"
    assert isinstance(second, SceneDescription)  # the next frame is its own request
    assert len(server.seen) == 3  # two for the first frame, never a third


def test_a_file_that_is_not_an_image_fails_alone_and_is_not_sent(
    tmp_path: Path, server: VisionServer, endpoint: str
) -> None:
    server.max_images = 2
    model = describer(endpoint, server, options={"max_images_per_request": 2})
    good, bad = frames(tmp_path, BLUE, BLUE)
    bad.path.write_text("not an image")
    first, second = model.describe([good, bad])
    assert isinstance(first, SceneDescription)
    assert isinstance(second, InvalidModelOutput)
    assert "not a PNG" in second.reason
    assert [seen.colours for seen in server.seen] == [[BLUE]]


def test_a_slow_endpoint_times_out_as_unavailable(
    tmp_path: Path, server: VisionServer, endpoint: str
) -> None:
    server.faults.append(Fault(kind="slow", delay=2.0))
    model = describer(endpoint, server, timeout_seconds=0.5)
    with pytest.raises(ModelUnavailable, match="timed out"):
        model.describe(frames(tmp_path, RED))


def test_a_failing_endpoint_is_unavailable(tmp_path: Path, server: VisionServer, endpoint: str) -> None:
    server.faults.append(Fault(status=503))
    model = describer(endpoint, server)
    with pytest.raises(ModelUnavailable, match="HTTP 503"):
        model.describe(frames(tmp_path, RED))
    [found] = model.describe(frames(tmp_path, BLUE))  # back again
    assert isinstance(found, SceneDescription)


def test_refused_credentials_or_an_unknown_model_are_not_configured(
    tmp_path: Path, server: VisionServer, endpoint: str
) -> None:
    with pytest.raises(ModelNotConfigured, match="AIMA_MODELS__VISION_DESCRIBER__API_KEY"):
        describer(endpoint, server, api_key="wrong").describe(frames(tmp_path, RED))
    with pytest.raises(ModelNotConfigured, match="AIMA_MODELS__VISION_DESCRIBER__MODEL"):
        describer(endpoint, server, model="llava-other").describe(frames(tmp_path, RED))
    assert server.seen == []


def test_health_reports_the_endpoint(server: VisionServer, endpoint: str) -> None:
    assert describer(endpoint, server).health().state == "not_loaded"
    assert describer(endpoint, server, api_key="wrong").health().state == "not_configured"

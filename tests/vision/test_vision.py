"""The vision function on real stores against the protocol-checking server: restraint indicators and
distress cues become findings for review with their evidence and model; an invalid answer fails that
frame only; no endpoint records not_run with the variable to set; a down endpoint is retried."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from aima.storage.vision import VisionDocument
from events.catalogue import VisionDescribed
from inference.errors import ModelUnavailable
from tests.vision.conftest import BLUE, GREEN, RED, Env, describer
from tests.vision.openai_vision_server import INVALID, Fault, VisionServer

CONTEXT = "Missing person case: the analyst asks about restraints."


def only(events: Sequence[object]) -> VisionDescribed:
    [event] = events
    assert isinstance(event, VisionDescribed)
    return event


async def test_frames_are_described_and_indicators_become_findings_with_evidence(
    env: Env, server: VisionServer, endpoint: str
) -> None:
    data = env.extracted([BLUE, RED, GREEN])
    core = env.core(describer(endpoint, server), context=CONTEXT)
    event = only(await env.run(core, data))
    assert (event.status, event.version, event.frames) == ("completed", 1, 3)
    assert (event.described_frames, event.failed_frames, event.result_count) == (3, 0, 3)
    assert (event.restraint_indicators, event.distress_cues) == (2, 1)
    assert (event.model.name, event.model.backend) == (server.model, "openai")

    document = env.vision.latest(env.tenant_id, env.case_id, data.media_id)
    assert isinstance(document, VisionDocument)
    assert (document.version, document.context_prompt) == (1, CONTEXT)
    assert [frame.status for frame in document.frames] == ["described"] * 3
    assert document.frames[1].description is not None
    assert document.frames[1].description["people"] == [
        {"clothing": "dark jacket", "posture": "sitting, hands behind the back"}
    ]
    assert all(CONTEXT in str(seen.body["messages"][1]["content"]) for seen in server.seen)

    findings = env.vision_findings(data.media_id)
    assert [(f.kind, f.restraint_type or f.cue, f.confidence) for f in findings] == [
        ("restraint", "cable_ties", 0.82),
        ("distress", "crying", 0.7),
        ("restraint", "gag", 0.3),
    ]
    cable = findings[0]
    assert cable.label == "possible restraint indicator: cable ties"
    assert "not a finding of fact" in cable.note
    assert cable.body_position == "wrists behind the back"
    assert (cable.model.name, cable.model.backend) == (server.model, "openai")
    [evidence] = cable.evidence
    assert (evidence.media_id, evidence.frame_id, evidence.start_s, evidence.end_s) == (
        data.media_id,
        "f0001",
        2.0,
        2.0,
    )
    assert (cable.frame_id, cable.timestamp_s, cable.vision_version, cable.context_given) == (
        "f0001",
        2.0,
        1,
        True,
    )
    assert findings[1].label == "possible visible distress: crying"
    assert findings[2].evidence[0].frame_id == "f0002"


async def test_the_tenants_lowest_confidence_keeps_weak_findings_out(
    env: Env, server: VisionServer, endpoint: str
) -> None:
    data = env.extracted([GREEN, RED])
    event = only(await env.run(env.core(describer(endpoint, server), floor=0.5), data))
    assert {f.restraint_type or f.cue for f in env.vision_findings(data.media_id)} == {"cable_ties", "crying"}
    assert (event.restraint_indicators, event.distress_cues) == (1, 1)
    document = env.vision.latest(env.tenant_id, env.case_id, data.media_id)
    assert document is not None
    assert document.frames[0].description is not None  # the weak gag stays in the document
    assert document.frames[0].description["restraint_indicators"][0]["type"] == "gag"


async def test_an_invalid_answer_is_retried_once_then_that_frame_fails(
    env: Env, server: VisionServer, endpoint: str
) -> None:
    data = env.extracted([RED, BLUE, GREEN])
    # frame 1: invalid then valid; frame 2: invalid twice; frame 3: valid
    server.faults.extend([Fault(kind=INVALID), Fault(kind="slow"), Fault(kind=INVALID), Fault(kind=INVALID)])
    event = only(await env.run(env.core(describer(endpoint, server)), data))
    assert len(server.seen) == 5
    assert (event.frames, event.described_frames, event.failed_frames) == (3, 2, 1)
    document = env.vision.latest(env.tenant_id, env.case_id, data.media_id)
    assert document is not None
    failed = document.frames[1]
    assert (failed.status, failed.description) == ("failed", None)
    assert failed.reason is not None
    assert "asked again" in failed.reason
    assert {f.frame_id for f in env.vision_findings(data.media_id)} == {"f0000", "f0002"}


async def test_a_frame_missing_from_the_object_store_fails_alone(
    env: Env, server: VisionServer, endpoint: str
) -> None:
    data = env.extracted([RED, BLUE], missing=[1])
    event = only(await env.run(env.core(describer(endpoint, server)), data))
    assert (event.described_frames, event.failed_frames) == (1, 1)
    document = env.vision.latest(env.tenant_id, env.case_id, data.media_id)
    assert document is not None
    assert document.frames[1].reason == "the frame is missing from the object store"


async def test_without_an_endpoint_the_step_is_not_run_with_the_variable_to_set(env: Env) -> None:
    data = env.extracted([RED])
    event = only(await env.run(env.core(None), data))
    assert (event.status, event.result_count, event.model.backend) == ("not_run", 0, "none")
    assert event.reason is not None
    assert "AIMA_MODELS__VISION_DESCRIBER__BACKEND=openai" in event.reason
    assert "AIMA_MODELS__VISION_DESCRIBER__ENDPOINT" in event.reason
    document = env.vision.latest(env.tenant_id, env.case_id, data.media_id)
    assert document is not None
    assert (document.status, document.reason, document.frames) == ("not_run", event.reason, [])
    assert env.vision_findings(data.media_id) == []


async def test_refused_credentials_are_not_run_and_keep_earlier_findings(
    env: Env, server: VisionServer, endpoint: str
) -> None:
    data = env.extracted([RED])
    await env.run(env.core(describer(endpoint, server)), data)
    before = [f.id for f in env.vision_findings(data.media_id)]
    event = only(
        await env.run(env.core(describer(endpoint, server, api_key="wrong")), data, event_id="again")
    )
    assert event.status == "not_run"
    assert "AIMA_MODELS__VISION_DESCRIBER__API_KEY" in (event.reason or "")
    assert [f.id for f in env.vision_findings(data.media_id)] == before


@pytest.mark.parametrize("fault", [Fault(status=503), Fault(status=500), Fault(kind="slow", delay=2.0)])
async def test_a_down_or_slow_endpoint_is_retried_and_stores_nothing(
    env: Env, server: VisionServer, endpoint: str, fault: Fault
) -> None:
    data = env.extracted([RED])
    server.faults.append(fault)
    core = env.core(describer(endpoint, server, timeout_seconds=0.5))
    with pytest.raises(ModelUnavailable):
        await env.run(core, data)
    assert env.vision.latest(env.tenant_id, env.case_id, data.media_id) is None
    event = only(await env.run(core, data))  # the redelivery, once the endpoint answers
    assert (event.status, event.described_frames) == ("completed", 1)


async def test_a_re_analysis_replaces_the_findings_and_adds_a_version(
    env: Env, server: VisionServer, endpoint: str
) -> None:
    data = env.extracted([RED])
    core = env.core(describer(endpoint, server))
    await env.run(core, data, event_id="run-1")
    first = sorted(f.id for f in env.vision_findings(data.media_id))
    await env.run(core, data, event_id="run-1")  # a redelivery writes the same findings
    assert sorted(f.id for f in env.vision_findings(data.media_id)) == first
    event = only(await env.run(core, data, event_id="run-2"))
    assert event.version == 3
    findings = env.vision_findings(data.media_id)
    assert len(findings) == 2
    assert {f.vision_version for f in findings} == {3}

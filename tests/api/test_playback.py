"""Playback through the gateway: a member asks for a playback URL (audited), the URL serves the
file's bytes without a bearer token, byte ranges are answered 206 and 416 as a media element needs,
and the ticket works for its file only, while it lasts, while its user is still a member. A sensitive
file gets a URL only when its original is asked for, and every such opening is audited."""

from __future__ import annotations

import io
import time
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from aima.identity.playback import PlaybackTickets
from aima.model_settings import SensitivityScorerSettings
from functions.api.problems import PROBLEM_JSON
from inference.cpu.nsfw import OpenNsfwScorer
from tests.api.conftest import World
from tests.api.test_transcripts import last_seq, records
from tests.sensitivity.test_serving import seeded, set_threshold

OPENED = "media.sensitive_opened"


def wav(pattern: bytes) -> bytes:
    """A WAV file (8 kHz, 8 bit, mono) whose samples repeat ``pattern``: every range is recognisable."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(1)
        writer.setframerate(8000)
        writer.writeframes(pattern * (10_196 // len(pattern)) + pattern[: 10_196 % len(pattern)])
    return out.getvalue()


BODY = wav(bytes(range(256)))  # 10,240 bytes


@pytest.fixture(scope="module")
def scorer() -> Iterator[OpenNsfwScorer]:
    model = OpenNsfwScorer(SensitivityScorerSettings(idle_unload_seconds=0))
    yield model
    model.close()


async def uploaded(world: World, content: bytes = BODY, content_type: str = "audio/wav") -> str:
    response = await world.client.post(
        f"/api/v1/cases/{world.case_id}/media",
        headers=world.headers("owner") | {"X-AIMA-Filename": "plea.wav", "Content-Type": content_type},
        content=content,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["media_id"])


async def ask(world: World, caller: str, media_id: str, **body: Any) -> httpx.Response:
    return await world.client.post(
        f"/api/v1/cases/{world.case_id}/media/{media_id}/playback", headers=world.headers(caller), json=body
    )


async def url_for(world: World, caller: str, media_id: str) -> str:
    response = await ask(world, caller, media_id)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["sensitive"] is False
    assert answer["opened"] is False
    assert answer["url"].startswith(f"/api/v1/cases/{world.case_id}/media/{media_id}/content?ticket=")
    return str(answer["url"])


async def test_the_url_serves_the_file_and_its_byte_ranges_without_a_bearer_token(world: World) -> None:
    media_id = await uploaded(world)
    before = last_seq(world)
    url = await url_for(world, "viewer", media_id)
    issued = records(world, before, "media.read")
    assert [(r["object"], r["detail"]["playback"]) for r in issued] == [
        (f"media/{media_id}/original", "issued")
    ]

    whole = await world.client.get(url)
    assert whole.status_code == 200
    assert whole.content == BODY
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"].startswith("audio/wav")
    assert whole.headers["cache-control"] == "private, no-store"

    part = await world.client.get(url, headers={"Range": "bytes=256-511"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 256-511/{len(BODY)}"
    assert part.content == BODY[256:512]
    assert int(part.headers["content-length"]) == 256

    tail = await world.client.get(url, headers={"Range": "bytes=-100"})
    assert (tail.status_code, tail.content) == (206, BODY[-100:])
    open_ended = await world.client.get(url, headers={"Range": "bytes=10000-"})
    assert (open_ended.status_code, open_ended.content) == (206, BODY[10000:])
    beyond_end = await world.client.get(url, headers={"Range": "bytes=10200-99999"})
    assert beyond_end.headers["content-range"] == f"bytes 10200-10239/{len(BODY)}"

    outside = await world.client.get(url, headers={"Range": f"bytes={len(BODY)}-"})
    assert outside.status_code == 416
    assert outside.headers["content-type"] == PROBLEM_JSON
    assert outside.headers["content-range"] == f"bytes */{len(BODY)}"

    for ignored in ("bytes=0-1,5-9", "items=0-9", "bytes=9-3"):  # several, other units, invalid: all of it
        answer = await world.client.get(url, headers={"Range": ignored})
        assert (answer.status_code, answer.content) == (200, BODY), ignored
    assert records(world, before, "media.read") == issued  # the player's requests ride on the issue


async def test_a_ticket_opens_its_own_file_only_and_nothing_else(world: World) -> None:
    first, second = await uploaded(world), await uploaded(world, wav(bytes(range(255, -1, -1))))
    url = await url_for(world, "analyst", first)
    ticket = url.split("ticket=", 1)[1]
    before = last_seq(world)

    other = await world.client.get(f"/api/v1/cases/{world.case_id}/media/{second}/content?ticket={ticket}")
    assert other.status_code == 401
    assert other.headers["content-type"] == PROBLEM_JSON
    assert "ticket for another file" in other.json()["detail"]
    denied = records(world, before, "auth.authenticate")
    assert [(r["outcome"], r["detail"]["reason"]) for r in denied] == [("denied", "ticket for another file")]

    tampered = ticket[:-4] + ("AAAA" if not ticket.endswith("AAAA") else "BBBB")
    assert (await world.client.get(url.replace(ticket, tampered))).status_code == 401
    # an access token is no ticket, and a ticket is no access token
    access = world.tokens["analyst"]
    assert (await world.client.get(url.replace(ticket, access))).status_code == 401
    me = await world.client.get("/api/v1/me", headers={"Authorization": f"Bearer {ticket}"})
    assert me.status_code == 401
    missing = await world.client.get(f"/api/v1/cases/{world.case_id}/media/{first}/content")
    assert missing.status_code == 422


async def test_an_expired_ticket_and_a_removed_member_are_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    media_id = await uploaded(world)
    services = world.services
    principal = services.directory.principal(world.users["analyst"].id)
    monkeypatch.setattr(time, "time", lambda: 1_000_000.0)  # issued long ago
    old = services.playback.issue(principal, world.case_id, media_id, opened=False)
    monkeypatch.undo()
    path = f"/api/v1/cases/{world.case_id}/media/{media_id}/content"
    expired = await world.client.get(path, params={"ticket": old.token})
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]

    # a ticket signed with a lifetime longer than the gateway grants is refused too
    longer = PlaybackTickets(
        services.keyring, services.directory, issuer=services.settings.jwt_issuer, ttl_s=3600
    )
    too_long = longer.issue(principal, world.case_id, media_id, opened=False)
    assert (await world.client.get(path, params={"ticket": too_long.token})).status_code == 401

    url = await url_for(world, "analyst", media_id)
    assert (await world.client.get(url)).status_code == 200
    removed = await world.client.delete(
        f"/api/v1/cases/{world.case_id}/members/{world.users['analyst'].id}", headers=world.headers("owner")
    )
    assert removed.status_code == 204, removed.text
    assert (await world.client.get(url)).status_code == 404  # the case is gone from their view at once

    claims = jwt.decode(url.split("ticket=", 1)[1], options={"verify_signature": False})
    assert claims["aud"] == "aima-playback"
    assert claims["exp"] - claims["iat"] == services.playback.ttl_s


async def test_non_members_get_no_url(world: World) -> None:
    media_id = await uploaded(world)
    assert (await ask(world, "nonmember", media_id)).status_code == 404
    assert (await ask(world, "anonymous", media_id)).status_code == 401
    unknown = await ask(world, "viewer", "0" * 32)
    assert unknown.status_code == 404


async def test_a_sensitive_file_plays_only_when_opened_and_each_opening_is_audited(
    world: World, scorer: OpenNsfwScorer
) -> None:
    data = await seeded(world, scorer)
    media_id = data.media_id
    before = last_seq(world)
    url = await url_for(world, "viewer", media_id)  # not sensitive at the default threshold

    await set_threshold(world, 0.0001)  # every scored frame counts as sensitive now
    assert (await world.client.get(url)).status_code == 403  # it became sensitive after the issue

    withheld = await ask(world, "viewer", media_id)
    assert withheld.status_code == 200
    answer = withheld.json()
    assert (answer["url"], answer["sensitive"], answer["opened"]) == (None, True, False)
    assert answer["score"] >= answer["threshold"] == 0.0001
    assert records(world, before, OPENED) == []

    for _ in range(2):
        opened = await ask(world, "viewer", media_id, original=True)
        assert opened.status_code == 200
        assert opened.json()["opened"] is True
        content = await world.client.get(opened.json()["url"], headers={"Range": "bytes=0-3"})
        assert content.status_code == 206
    openings = records(world, before, OPENED)
    assert len(openings) == 2
    assert {(r["actor"], r["object"]) for r in openings} == {
        (world.users["viewer"].id, f"media/{media_id}/original")
    }
    assert all(r["detail"]["threshold"] == 0.0001 for r in openings)

    refused = await ask(world, "viewer", media_id, original="yes please")
    assert refused.status_code == 422

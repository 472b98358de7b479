"""A file's page and the case's search in headless Chromium against a real gateway running every
function: the video itself played from its signed playback URL (picture decoded, byte ranges), the
transcript of a short spoken video, a transcript line seeking the player, the current line marked
during playback, ``?t=`` seeking on load, search finding a spoken word and linking to the file at its
time, accessibility (axe-core) of both pages, and a sensitive video withheld until the reviewer opens
it, that opening found in the audit log.

The video is made here: two sentences spoken by espeak-ng (`aima.samples.write_speech_wav`) with a
pause between them, muxed by ffmpeg under a generated picture."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from aima.samples import write_speech_wav
from tests.web.support import PHASES_DONE, PHASES_FINAL, Server, axe_violations, describe

pytestmark = pytest.mark.timeout(300)

JOB_TIMEOUT_S = 240.0
FIRST = "The warehouse door was open at midnight."
SECOND = "Bring the red suitcase to the harbour tomorrow."


def talking_video(folder: Path) -> Path:
    """Two spoken sentences with a second of silence between them, under a test picture (MP4)."""
    if shutil.which("ffmpeg") is None or shutil.which("espeak-ng") is None:
        pytest.skip("ffmpeg and espeak-ng are needed for the spoken video")
    first = write_speech_wav(folder / "first.wav", FIRST)
    second = write_speech_wav(folder / "second.wav", SECOND)
    out = folder / "talk.mp4"
    graph = (
        "[0:a]aresample=16000[a0];[1:a]aresample=16000[a1];"
        "anullsrc=r=16000:cl=mono:d=1.5[gap];"
        "[a0][gap][a1]concat=n=3:v=0:a=1[a]"
    )
    argv = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-i",
        str(first),
        "-i",
        str(second),
    ]
    argv += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-filter_complex", graph]
    argv += [
        "-map",
        "2:v",
        "-map",
        "[a]",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        str(out),
    ]
    subprocess.run(argv, check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def talk(server: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A case with the spoken video, analysed: case id, media id, filename and transcript segments."""
    path = talking_video(tmp_path_factory.mktemp("talk"))
    case_id = server.create_case(f"Talk {uuid.uuid4().hex[:6]}")
    media_id = server.upload(case_id, path)
    submitted = server.api("POST", f"/cases/{case_id}/jobs", json={"media_ids": [media_id]})
    assert submitted.status_code == 201, submitted.text
    phase = server.wait_for_job(case_id, str(submitted.json()["id"]), PHASES_FINAL, timeout=JOB_TIMEOUT_S)
    assert phase in PHASES_DONE, f"the job ended {phase}:\n{server.tail()}"
    answer = server.api("GET", f"/cases/{case_id}/media/{media_id}/transcript")
    assert answer.status_code == 200, answer.text
    segments = [s for s in answer.json()["transcript"]["segments"] if s.get("text")]
    if not segments:
        pytest.fail("the analysis transcribed nothing of the spoken video")
    return {"case": case_id, "media": media_id, "name": path.name, "segments": segments}


def sign_in(page: Page, server: Server) -> None:
    page.goto("/login")
    page.get_by_label("Username", exact=True).fill(server.admin[0])
    page.get_by_label("Password", exact=True).fill(server.admin[1])
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Cases", level=1)).to_be_visible()


def open_media(page: Page, talk: dict[str, Any], query: str = "", transcript: str = "Transcript") -> None:
    page.goto(f"/cases/{talk['case']}/media/{talk['media']}{query}")
    expect(page.get_by_role("heading", name=talk["name"], level=2)).to_be_visible()
    expect(page.get_by_role("list", name=transcript).get_by_role("listitem")).to_have_count(
        len(talk["segments"])
    )
    # the player knows the file's length from its own bytes
    page.wait_for_function(
        "() => { const m = document.querySelector('.media-player'); return m && m.readyState >= 1; }"
    )


def current_time(page: Page) -> float:
    return float(page.evaluate("() => document.querySelector('.media-player').currentTime"))


def test_the_transcript_lists_segments_and_a_line_seeks_the_player(
    page: Page, server: Server, talk: dict[str, Any]
) -> None:
    sign_in(page, server)
    page.goto(f"/cases/{talk['case']}")
    page.get_by_role("link", name=talk["name"], exact=True).click()
    expect(page.get_by_role("heading", name=talk["name"], level=2)).to_be_visible()
    open_media(page, talk)
    expect(page.get_by_label(f"Player of {talk['name']}")).to_be_visible()
    last = talk["segments"][-1]
    lines = page.get_by_role("list", name="Transcript").get_by_role("button")
    lines.last.click()
    page.wait_for_function("() => !document.querySelector('.media-player').paused")
    assert abs(current_time(page) - last["start"]) < 0.5, (current_time(page), last["start"])
    # during playback the current segment is marked
    expect(page.locator('.transcript-list li[aria-current="true"]')).to_have_count(1)
    expect(page.locator('.transcript-list li[aria-current="true"]')).to_contain_text(
        last["text"].strip()[:10]
    )
    page.evaluate("() => document.querySelector('.media-player').pause()")


def test_the_player_plays_the_file_itself_from_its_playback_url(
    page: Page, server: Server, talk: dict[str, Any]
) -> None:
    sign_in(page, server)
    contents: list[dict[str, Any]] = []
    page.on(
        "response",
        lambda response: (
            contents.append({"status": response.status, "headers": response.headers})
            if "/content?ticket=" in response.url
            else None
        ),
    )
    open_media(page, talk)
    source = str(page.evaluate("() => document.querySelector('.media-player').currentSrc"))
    assert f"/api/v1/cases/{talk['case']}/media/{talk['media']}/content?ticket=" in source, source
    # the picture is the file's own (the stand-in clock has none) and its length the file's
    page.wait_for_function("() => document.querySelector('.media-player').videoWidth === 320")
    duration = float(page.evaluate("() => document.querySelector('.media-player').duration"))
    files = server.api("GET", f"/cases/{talk['case']}/media").json()
    probed = next(f for f in files if f["id"] == talk["media"])["metadata"]
    assert abs(duration - float(probed["duration_s"])) < 0.2, (duration, probed)
    page.evaluate("() => document.querySelector('.media-player').play()")
    page.wait_for_function("() => document.querySelector('.media-player').currentTime > 0.5")
    page.evaluate("() => document.querySelector('.media-player').pause()")
    assert contents, "the player fetched nothing from the playback URL"
    assert {c["status"] for c in contents} <= {200, 206}, contents
    assert any(c["headers"].get("accept-ranges") == "bytes" for c in contents), contents
    expect(page.locator(".media-clock-note")).not_to_contain_text("cannot play")


def test_a_time_in_the_url_seeks_on_load(page: Page, server: Server, talk: dict[str, Any]) -> None:
    sign_in(page, server)
    at = round(talk["segments"][-1]["start"], 2)
    open_media(page, talk, f"?t={at}")
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('.media-player').currentTime - {at}) < 0.5"
    )
    expect(page.locator('.transcript-list li[aria-current="true"]')).to_have_count(1)


def test_search_finds_a_spoken_word_and_links_to_its_time(
    page: Page, server: Server, talk: dict[str, Any]
) -> None:
    sign_in(page, server)
    page.goto(f"/cases/{talk['case']}/search")
    page.get_by_label("Search the case", exact=True).fill("red suitcase harbour")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page).to_have_url(re.compile(r"/search\?q=red(%20|\+)suitcase"))
    results = page.locator(".search-results li")
    expect(results.first).to_be_visible()
    link = results.first.get_by_role("link")
    expect(link).to_contain_text(talk["name"])
    href = link.get_attribute("href") or ""
    match = re.search(rf"/cases/{talk['case']}/media/{talk['media']}\?t=([0-9.]+)$", href)
    assert match, href
    spoken = [s for s in talk["segments"] if "suitcase" in s["text"].lower() or "harbo" in s["text"].lower()]
    if spoken:
        assert abs(float(match.group(1)) - spoken[0]["start"]) < 0.5
    link.click()
    expect(page.get_by_role("heading", name=talk["name"], level=2)).to_be_visible()
    page.wait_for_function(
        f"() => Math.abs(document.querySelector('.media-player').currentTime - {match.group(1)}) < 0.5"
    )
    assert not describe(axe_violations(page)), describe(axe_violations(page))


def test_both_pages_pass_axe_in_german(page: Page, server: Server, talk: dict[str, Any]) -> None:
    sign_in(page, server)
    open_media(page, talk)
    page.get_by_label("Language").select_option("de")
    expect(page.locator("html")).to_have_attribute("lang", "de")
    expect(page.get_by_role("list", name="Transkript")).to_be_visible()
    expect(page.get_by_label(f"Player von {talk['name']}")).to_be_visible()
    violations = axe_violations(page)
    assert not violations, describe(violations)
    page.goto(f"/cases/{talk['case']}/search?q=warehouse")
    expect(page.get_by_label("Fall durchsuchen", exact=True)).to_have_value("warehouse")
    expect(page.get_by_role("button", name="Suchen", exact=True)).to_be_visible()
    expect(page.locator(".search-results li").first).to_be_visible()
    violations = axe_violations(page)
    assert not violations, describe(violations)


def test_the_transcript_follows_playback_from_the_keyboard(
    page: Page, server: Server, talk: dict[str, Any]
) -> None:
    if len(talk["segments"]) < 2:
        pytest.skip("one segment only: nothing to follow")
    sign_in(page, server)
    open_media(page, talk)
    lines = page.get_by_role("list", name="Transcript").get_by_role("listitem")
    lines.first.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(lines.first).to_have_attribute("aria-current", "true")
    # playing on, the mark moves to the last line by itself
    expect(lines.last).to_have_attribute("aria-current", "true", timeout=15_000)
    expect(lines.first).not_to_have_attribute("aria-current", "true")
    page.screenshot(path=str(server.workdir / "media-page.png"))


def test_a_sensitive_video_plays_only_once_opened_and_the_opening_is_audited(
    page: Page, server: Server, talk: dict[str, Any]
) -> None:
    """Last in the module: it lowers the tenant's threshold so that the video counts as sensitive."""
    current = server.api("GET", "/config/thresholds")
    assert current.status_code == 200, current.text
    before = dict(current.json()["value"])
    changed = server.api("PUT", "/config/thresholds", json=before | {"sensitive_blur": 0.0})
    assert changed.status_code == 200, changed.text
    try:
        sign_in(page, server)
        page.goto(f"/cases/{talk['case']}/media/{talk['media']}")
        open_button = page.get_by_role("button", name=f"Open and play {talk['name']}")
        expect(open_button).to_be_visible()
        expect(page.get_by_text("its picture stays blurred")).to_be_visible()
        assert page.evaluate("() => document.querySelector('.media-player').currentSrc") == ""
        assert opened_records(server, talk) == []
        open_button.click()
        expect(page.get_by_text("Opened on your request")).to_be_visible()
        page.wait_for_function(
            "() => { const m = document.querySelector('.media-player'); return m && m.readyState >= 1; }"
        )
        records = opened_records(server, talk)
        assert [r["object"] for r in records] == [f"media/{talk['media']}/original"], records
        assert not describe(axe_violations(page)), describe(axe_violations(page))
    finally:
        restored = server.api("PUT", "/config/thresholds", json=before)
        assert restored.status_code == 200, restored.text


def opened_records(server: Server, talk: dict[str, Any]) -> list[dict[str, Any]]:
    answer = server.api("GET", "/audit", params={"case_id": talk["case"], "action": "media.sensitive_opened"})
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()["records"]
    return records

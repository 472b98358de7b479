"""The persons and findings pages in headless Chromium against a real gateway running every function:
merging and renaming persons, a decision on a spoken cue with its reason, opening the original of a
blurred image (and its audit record), what a viewer is not offered, and accessibility (axe-core).

The harness's tiny tone and pattern files yield neither persons nor findings, so the tests make their
own through the API: a photograph of three people composed from packaged photographs
(`aima.samples_faces`, about 6 s to analyse on a CPU) and a spoken plea made with espeak-ng
(`aima.samples.write_speech_wav`, about 15 s). The tenant's blur threshold is set to 0 so that every
image of the case is served blurred until opened."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from aima.samples import write_speech_wav
from aima.samples_faces import face_samples, heads, scene
from tests.web.conftest import PageFactory
from tests.web.support import (
    NOTE,
    PHASES_DONE,
    PHASES_FINAL,
    Server,
    axe_violations,
    describe,
    strong_password,
)

pytestmark = pytest.mark.timeout(300)

JOB_TIMEOUT_S = 240.0
OPENED = "media.sensitive_opened"
PLEA = "Help me! Please let me go. Stop, you are hurting me."


# --- data, made through the API ------------------------------------------------------------------


@pytest.fixture(scope="module")
def blur_everything(server: Server) -> None:
    """The tenant's sensitive-image threshold at 0: every scored image is served blurred."""
    current = server.api("GET", "/config/thresholds")
    assert current.status_code == 200, current.text
    value = dict(current.json()["value"]) | {"sensitive_blur": 0.0}
    changed = server.api("PUT", "/config/thresholds", json=value)
    assert changed.status_code == 200, changed.text


@pytest.fixture(scope="module")
def review_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("review-media")
    try:
        pool = heads(face_samples(), ["obama", "biden", "hopper"])
    except Exception as exc:  # the photographs could not be fetched
        pytest.fail(f"no face photographs: {exc}")
    photo, _ = scene(pool, 2, faces=3)
    people = folder / "people.jpg"
    photo.save(people, quality=90)
    return {"people": people, "plea": write_speech_wav(folder / "plea.wav", PLEA)}


def analysed_case(server: Server, name: str, files: list[Path]) -> tuple[str, list[str]]:
    """A new case of the admin holding ``files``, analysed by one finished job: its id, media ids."""
    case_id = server.create_case(name)
    media_ids = [server.upload(case_id, path) for path in files]
    submitted = server.api("POST", f"/cases/{case_id}/jobs", json={"media_ids": media_ids})
    assert submitted.status_code == 201, submitted.text
    phase = server.wait_for_job(case_id, str(submitted.json()["id"]), PHASES_FINAL, timeout=JOB_TIMEOUT_S)
    assert phase in PHASES_DONE, f"the job ended {phase}:\n{server.tail()}"
    return case_id, media_ids


@pytest.fixture(scope="module")
def people_case(server: Server, review_media: dict[str, Path], blur_everything: None) -> Callable[[], str]:
    """Makes a new case with the photograph of three people, analysed; at least two persons in it."""

    def make() -> str:
        case_id, _ = analysed_case(server, f"People {uuid.uuid4().hex[:6]}", [review_media["people"]])
        persons = server.api("GET", f"/cases/{case_id}/persons").json()["persons"]
        if len(persons) < 2:
            pytest.fail(f"the analysis found {len(persons)} person(s) in the photograph")
        return case_id

    return make


@pytest.fixture(scope="module")
def plea_case(server: Server, review_media: dict[str, Path]) -> str:
    """A case with the spoken plea, analysed; its cue findings."""
    case_id, _ = analysed_case(server, f"Plea {uuid.uuid4().hex[:6]}", [review_media["plea"]])
    findings = server.api("GET", f"/cases/{case_id}/findings").json()["findings"]
    if not findings:
        pytest.fail("the analysis found no spoken cue in the plea")
    return case_id


def persons_of(server: Server, case_id: str) -> list[dict[str, Any]]:
    answer = server.api("GET", f"/cases/{case_id}/persons")
    assert answer.status_code == 200, answer.text
    persons: list[dict[str, Any]] = answer.json()["persons"]
    return persons


# --- the browser ---------------------------------------------------------------------------------


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Cases", level=1)).to_be_visible()


def card(page: Page, name: str) -> Locator:
    return page.get_by_role("article", name=name, exact=True)


def open_persons(page: Page, case_id: str) -> None:
    page.goto(f"/cases/{case_id}/persons")
    expect(page.get_by_role("heading", name=re.compile(r"^\d+ persons?$"))).to_be_visible()


def finding_item(page: Page, label: str) -> Locator:
    return page.get_by_role("listitem").filter(has=page.get_by_role("heading", name=label, exact=True))


# --- persons -------------------------------------------------------------------------------------


def test_merging_two_persons_leaves_one(page: Page, server: Server, people_case: Callable[[], str]) -> None:
    case_id = people_case()
    before = persons_of(server, case_id)
    first, second = before[0], before[1]
    sign_in(page, *server.admin)
    open_persons(page, case_id)
    expect(page.get_by_role("article")).to_have_count(len(before))
    source = card(page, first["display_name"])
    expect(
        source.get_by_role("img", name=f"Best crop of {first['display_name']}", exact=True)
    ).to_be_visible()
    expect(source).to_contain_text(re.compile(r"\d+ appearances?"))

    source.get_by_role("button", name=f"Merge {first['display_name']} into…", exact=True).click()
    source.get_by_label("Merge into", exact=True).select_option(label=second["display_name"])
    source.get_by_role("button", name="Merge", exact=True).click()

    expect(page.get_by_role("article")).to_have_count(len(before) - 1)
    expect(card(page, first["display_name"])).to_have_count(0)
    expect(card(page, second["display_name"])).to_be_visible()
    after = persons_of(server, case_id)
    assert [p["id"] for p in after] == [p["id"] for p in before if p["id"] != first["id"]]
    merged = next(p for p in after if p["id"] == second["id"])
    assert merged["track_count"] == first["track_count"] + second["track_count"]


def test_renaming_a_person(page: Page, server: Server, people_case: Callable[[], str]) -> None:
    case_id = people_case()
    person = persons_of(server, case_id)[0]
    sign_in(page, *server.admin)
    open_persons(page, case_id)
    item = card(page, person["display_name"])
    item.get_by_role("button", name=f"Rename {person['display_name']}", exact=True).click()
    item.get_by_label("New name", exact=True).fill("Witness A")
    item.get_by_role("button", name="Save name", exact=True).click()

    renamed = card(page, "Witness A")
    expect(renamed).to_be_visible()
    expect(renamed.get_by_role("img", name="Best crop of Witness A", exact=True)).to_be_visible()
    answer = server.api("GET", f"/cases/{case_id}/persons/{person['id']}")
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "Witness A"


def test_the_gallery_lists_a_persons_tracks_with_checkboxes(
    page: Page, server: Server, people_case: Callable[[], str]
) -> None:
    case_id = people_case()
    person = max(persons_of(server, case_id), key=lambda p: p["track_count"])
    gallery = server.api("GET", f"/cases/{case_id}/persons/{person['id']}").json()["gallery"]
    sign_in(page, *server.admin)
    open_persons(page, case_id)
    item = card(page, person["display_name"])
    item.get_by_role("button", name=f"Show crops of {person['display_name']}", exact=True).click()
    for track in gallery:
        expect(item.get_by_role("checkbox", name=f"Select {track['label']}", exact=True)).to_be_visible()
    if len(gallery) < 2:
        return  # one track: nothing to split off
    item.get_by_role("checkbox", name=f"Select {gallery[-1]['label']}", exact=True).check()
    item.get_by_role("button", name="Split selected tracks", exact=True).click()
    expect(page.get_by_role("article")).to_have_count(len(persons_of(server, case_id)))
    assert any(p["origin"] == "split" for p in persons_of(server, case_id))


def test_opening_a_blurred_original_is_audited(
    page: Page, server: Server, people_case: Callable[[], str]
) -> None:
    case_id = people_case()
    person = persons_of(server, case_id)[0]
    name = person["display_name"]
    sign_in(page, *server.admin)
    open_persons(page, case_id)
    item = card(page, name)
    expect(item).to_contain_text("Shown blurred")
    assert _opened(server, case_id) == []

    with page.expect_response(lambda r: "original=true" in r.url and r.status == 200):
        item.get_by_role("button", name=f"Open original of {name}", exact=True).click()
    expect(item.get_by_role("button", name=f"Blur {name} again", exact=True)).to_be_visible()
    records = _opened(server, case_id)
    assert len(records) == 1, records
    assert records[0]["outcome"] == "allowed"

    # one at a time: opening another person's original blurs the first again
    other = persons_of(server, case_id)[1]["display_name"]
    card(page, other).get_by_role("button", name=f"Open original of {other}", exact=True).click()
    expect(item.get_by_role("button", name=f"Open original of {name}", exact=True)).to_be_visible()


def _opened(server: Server, case_id: str) -> list[dict[str, Any]]:
    answer = server.api("GET", "/audit", params={"case_id": case_id, "action": OPENED})
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()["records"]
    return records


# --- findings ------------------------------------------------------------------------------------


def test_confirming_an_indicator_with_a_reason(page: Page, server: Server, plea_case: str) -> None:
    finding = server.api("GET", f"/cases/{plea_case}/findings").json()["findings"][0]
    sign_in(page, *server.admin)
    page.goto(f"/cases/{plea_case}/findings")
    item = finding_item(page, finding["label"])
    expect(item).to_contain_text(f"{int(finding['confidence'] * 100 + 0.5)} %")  # as Math.round
    expect(item).to_contain_text("Review: not reviewed yet")
    expect(item.get_by_role("link", name=re.compile(r"^Play plea\.wav at"))).to_have_attribute(
        "href", re.compile(rf"/cases/{plea_case}/media/{finding['media_id']}\?t=\d+$")
    )

    decisions = item.get_by_role("group", name="Decision", exact=True)
    for label in ("Confirm", "Reject", "Unclear"):
        expect(decisions.get_by_role("button", name=label, exact=True)).to_be_visible()
    decisions.get_by_role("button", name="Confirm", exact=True).click()
    item.get_by_label("Reason", exact=True).fill("Clearly audible plea in the recording.")
    item.get_by_role("button", name="Save decision", exact=True).click()

    expect(item).to_contain_text("Review: confirmed — Clearly audible plea in the recording.")
    reviews = server.api("GET", f"/cases/{plea_case}/reviews").json()["reviews"]
    review = next(r for r in reviews if r["indicator_key"] == finding["indicator_key"])
    assert review["decision"] == "confirmed"
    assert review["reason"] == "Clearly audible plea in the recording."
    state = {
        f["id"]: f["review_state"]
        for f in server.api("GET", f"/cases/{plea_case}/findings").json()["findings"]
    }
    assert state[finding["id"]] == "confirmed"


# --- rights and accessibility --------------------------------------------------------------------


def test_a_viewer_sees_no_correction_or_decision_controls(
    new_page: PageFactory, server: Server, people_case: Callable[[], str], plea_case: str
) -> None:
    case_id = people_case()
    username, password = f"viewer-{uuid.uuid4().hex[:6]}", strong_password()
    viewer = server.add_user(username, password, "user")
    server.share(case_id, viewer["id"], "viewer")
    server.share(plea_case, viewer["id"], "viewer")
    person = persons_of(server, case_id)[0]

    page = new_page()
    sign_in(page, username, password)
    open_persons(page, case_id)
    item = card(page, person["display_name"])
    expect(item.get_by_role("img", name=f"Best crop of {person['display_name']}", exact=True)).to_be_visible()
    item.get_by_role("button", name=f"Show crops of {person['display_name']}", exact=True).click()
    expect(item.get_by_role("heading", name=f"Crops of {person['display_name']}")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^(Rename|Merge) "))).to_have_count(0)
    expect(page.get_by_role("checkbox")).to_have_count(0)
    expect(page.get_by_role("button", name="Split selected tracks")).to_have_count(0)

    page.goto(f"/cases/{plea_case}/findings")
    expect(page.get_by_role("heading", name=re.compile(r"^\d+ findings?$"))).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("^possibly")).first).to_be_visible()
    for label in ("Confirm", "Reject", "Unclear", "Save decision"):
        expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
    expect(page.get_by_label("Reason", exact=True)).to_have_count(0)


def test_both_pages_have_no_serious_accessibility_violations(
    page: Page, server: Server, people_case: Callable[[], str], plea_case: str
) -> None:
    case_id = people_case()
    sign_in(page, *server.admin)
    found: dict[str, list[dict[str, Any]]] = {}
    for path, ready in (
        (f"/cases/{case_id}/persons", re.compile(r"^\d+ persons?$")),
        (f"/cases/{plea_case}/findings", re.compile(r"^\d+ findings?$")),
    ):
        page.goto(path)
        expect(page.get_by_role("heading", name=ready)).to_be_visible()
        expect(page.get_by_role("note").filter(has_text=NOTE)).to_be_visible()
        page.wait_for_load_state("networkidle")
        if path.endswith("/persons"):  # the open forms too
            first = page.get_by_role("article").first
            first.get_by_role("button", name=re.compile(r"^Rename ")).click()
            first.get_by_role("button", name=re.compile(r"^Show crops of ")).click()
            expect(first.get_by_role("checkbox").first).to_be_visible()
        violations = axe_violations(page)
        if violations:
            found[path] = violations
    assert not found, "\n".join(f"{path}:\n{describe(v)}" for path, v in found.items())

"""The review workspace in headless Chromium against a real gateway running every function: sign-in,
the whole flow from a new case to an exported PDF, the German interface, accessibility (axe-core),
deleting a case, and what a viewer is not offered. Written against the interface's contract (its
routes, accessible names and English texts); one analysed case made through the API serves the tests
that only look at results."""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.web.conftest import AnalysedCase, PageFactory
from tests.web.support import NOTE, NOTE_DE, PHASES_DONE, Server, axe_violations, describe, strong_password

pytestmark = pytest.mark.timeout(300)

JOB_DONE_MS = 240_000
UPLOAD_MS = 60_000
CASE_URL = re.compile(r"/cases/([^/?#]+)/?$")


# --- helpers -------------------------------------------------------------------------------------


def note(page: Page) -> Locator:
    return page.get_by_role("note").filter(has_text=re.compile(f"{NOTE}|{NOTE_DE}"))


def sign_in(page: Page, username: str, password: str) -> None:
    """Sign in through the form and land on Cases."""
    page.goto("/login")
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/cases/?$"))
    expect(page.get_by_role("heading", name="Cases", level=1)).to_be_visible()


def signed_in_header(page: Page) -> None:
    """What every signed-in page shows: the link to Cases, Sign out, the language, the note."""
    expect(page.get_by_role("link", name="Cases", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Sign out", exact=True)).to_be_visible()
    expect(page.get_by_label("Language", exact=True)).to_be_visible()
    expect(note(page)).to_contain_text(NOTE)


def case_item(page: Page, name: str) -> Locator:
    """The list item of the case named ``name`` on /cases."""
    link = page.get_by_role("link", name=name, exact=True)
    return page.get_by_role("listitem").filter(has=link)


def progress_of(bar: Locator) -> float:
    """How far a progress element is, 0 to 1 (a <progress>' value of its max, else aria-valuenow of
    aria-valuemax, 100 by default)."""
    value: float = bar.evaluate(
        """(el) => {
            if (el instanceof HTMLProgressElement) return el.max ? el.value / el.max : 0;
            const now = parseFloat(el.getAttribute("aria-valuenow") ?? "0");
            const max = parseFloat(el.getAttribute("aria-valuemax") ?? "100");
            return max ? now / max : 0;
        }"""
    )
    return value


def job_article(page: Page) -> Locator:
    return page.get_by_role("article", name=re.compile(r"^Job [0-9a-f-]{8}$"))


def metadata_pairs(header: str) -> dict[str, str]:
    """A tus ``Upload-Metadata`` header's keys and decoded values."""
    pairs = {}
    for item in filter(None, (part.strip() for part in header.split(","))):
        key, _, value = item.partition(" ")
        pairs[key] = base64.b64decode(value).decode(errors="replace")
    return pairs


def problem_detail(server: Server, username: str, password: str) -> str:
    """What the API answers a sign-in with these credentials (the alert must show it)."""
    answer = httpx.post(
        f"{server.url}/api/v1/auth/token", data={"username": username, "password": password}, timeout=30
    )
    assert answer.status_code == 401, answer.text
    detail: str = answer.json()["detail"]
    return detail


# --- the tests -----------------------------------------------------------------------------------


def test_a_wrong_password_shows_the_apis_reason_and_the_right_one_lands_on_cases(
    page: Page, server: Server
) -> None:
    username, password = server.admin
    wrong = password + "-not"
    detail = problem_detail(server, username, wrong)

    page.goto("/login")
    expect(page.get_by_role("heading", name="Sign in", level=1)).to_be_visible()
    expect(note(page)).to_contain_text(NOTE)
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(wrong)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(detail)
    expect(page).to_have_url(re.compile(r"/login$"))

    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page).to_have_url(re.compile(r"/cases/?$"))
    expect(page.get_by_role("heading", name="Cases", level=1)).to_be_visible()
    signed_in_header(page)


def test_create_upload_analyse_and_export_the_report(page: Page, server: Server, media: list[Path]) -> None:
    sign_in(page, *server.admin)
    name = f"Harbour fire {uuid.uuid4().hex[:6]}"
    page.get_by_label("Case name", exact=True).fill(name)
    page.get_by_role("button", name="Create case", exact=True).click()
    expect(page).to_have_url(CASE_URL)
    match = CASE_URL.search(page.url)
    assert match is not None
    case_id = match.group(1)
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    signed_in_header(page)
    for section in ("Files", "Jobs", "Reports"):
        expect(page.get_by_role("navigation").get_by_role("link", name=section, exact=True)).to_be_visible()

    begun: list[str] = []  # the Upload-Metadata of every tus upload the page begins
    page.on(
        "request",
        lambda request: (
            begun.append(request.headers.get("upload-metadata", ""))
            if request.method == "POST" and request.url.endswith(f"/cases/{case_id}/uploads")
            else None
        ),
    )
    page.get_by_label("Choose files", exact=True).set_input_files([str(path) for path in media])
    for path in media:
        item = page.get_by_role("listitem").filter(has_text=path.name)
        expect(item).to_have_count(1)
        expect(item).to_contain_text("Uploaded", timeout=UPLOAD_MS)
        bar = item.get_by_label(f"Upload progress of {path.name}", exact=True)
        expect(bar).to_be_visible()
        assert progress_of(bar) == pytest.approx(1.0), f"{path.name}: the progress did not reach 100"
    # the files wait for the job the page submits (else they would be analysed twice)
    assert len(begun) == len(media), begun
    assert all(metadata_pairs(sent).get("analysis") == "job" for sent in begun), begun
    stored = server.api("GET", f"/cases/{case_id}/media").json()
    assert sorted(file["filename"] for file in stored) == sorted(path.name for path in media)

    page.get_by_role("button", name="Analyse uploaded files", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/jobs/?$"))
    article = job_article(page)
    expect(article).to_have_count(1)
    # the newest job shows its steps per file at once: a row per file from the start, followed live
    expect(article.get_by_role("button", name="Steps per file", exact=True)).to_have_attribute(
        "aria-expanded", "true"
    )
    per_file = article.get_by_role("table", name=re.compile(r"^Steps per file of Job "))
    expect(per_file.get_by_role("row")).to_have_count(len(media) + 1)
    for path in media:
        expect(per_file.get_by_role("rowheader", name=path.name, exact=True)).to_be_visible()
    status = article.get_by_role("status")
    expect(status).to_contain_text(re.compile(r"\b(PartiallySucceeded|Succeeded)\b"), timeout=JOB_DONE_MS)
    jobs = server.api("GET", f"/cases/{case_id}/jobs").json()["items"]
    assert len(jobs) == 1, "one job for the three files"
    [job] = jobs
    # every cell reaches a final state (the last event's refetch), as the API's ledger says
    unfinished = per_file.locator('td[data-state="pending"], td[data-state="running"]')
    expect(unfinished).to_have_count(0, timeout=10_000)
    ledger = server.api("GET", f"/cases/{case_id}/jobs/{job['id']}/files").json()
    columns = per_file.get_by_role("columnheader").all_inner_texts()[1:]
    assert sorted(columns) == sorted(ledger["steps"]), (columns, ledger["steps"])
    for entry in ledger["files"]:
        row = per_file.get_by_role("row").filter(
            has=page.get_by_role("rowheader", name=entry["filename"], exact=True)
        )
        states = row.locator("td").evaluate_all("cells => cells.map((cell) => cell.dataset.state)")
        shown = dict(zip(columns, states, strict=True))
        # a step the file has no row for (faces of a sound file) is "none": not planned for it
        expected = {step["step"]: step["state"] for step in entry["steps"]}
        assert shown == {step: expected.get(step, "none") for step in columns}, (entry, shown)
        assert set(shown.values()) <= {"succeeded", "failed", "not_run", "cancelled", "none"}, shown
        assert "succeeded" in shown.values(), shown
    assert (job["phase"], job["files"]) in {(phase, len(media)) for phase in PHASES_DONE}
    expect(article).to_have_accessible_name(f"Job {job['id'][:8]}")

    page.get_by_role("navigation").get_by_role("link", name="Reports", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/reports/?$"))
    page.get_by_role("link", name="Version 1", exact=True).click()
    with page.expect_download() as pdf_download:
        page.get_by_role("button", name="Export PDF", exact=True).click()
    pdf = Path(pdf_download.value.path())
    assert pdf.read_bytes().startswith(b"%PDF"), pdf.read_bytes()[:200]
    with page.expect_download() as json_download:
        page.get_by_role("button", name="Export JSON", exact=True).click()
    exported: Any = json.loads(Path(json_download.value.path()).read_bytes())
    assert isinstance(exported, dict)


def test_the_german_interface_stays_after_a_reload(page: Page, server: Server) -> None:
    sign_in(page, *server.admin)
    language = page.get_by_label("Language", exact=True)
    expect(language.locator("option")).to_have_text(["English", "Deutsch"])
    language.select_option(label="Deutsch")
    expect(note(page)).to_contain_text(NOTE_DE)
    page.reload()
    expect(note(page)).to_contain_text(NOTE_DE)
    # the select by its options: its label may be German now
    page.locator("select", has=page.locator("option", has_text="Deutsch")).select_option(label="English")
    expect(note(page)).to_contain_text(NOTE)


def test_the_main_pages_have_no_serious_accessibility_violations(
    page: Page, server: Server, analysed: AnalysedCase
) -> None:
    found: dict[str, list[dict[str, Any]]] = {}

    def check(path: str, heading: str | None) -> None:
        expect(page).to_have_url(re.compile(re.escape(path) + "/?$"))
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        expect(note(page)).to_be_visible()
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        if violations:
            found[path] = violations

    page.goto("/login")
    check("/login", "Sign in")
    sign_in(page, *server.admin)
    check("/cases", "Cases")
    case = f"/cases/{analysed.id}"
    for path in (case, f"{case}/jobs", f"{case}/reports"):
        page.goto(path)
        check(path, analysed.name if path == case else None)
        if path.endswith("/jobs"):
            expect(job_article(page).get_by_role("status")).to_contain_text(analysed.phase)
        if path.endswith("/reports"):
            expect(page.get_by_role("link", name="Version 1", exact=True)).to_be_visible()
    assert not found, "\n".join(f"{path}:\n{describe(v)}" for path, v in found.items())


def test_deleting_a_case_asks_first(page: Page, server: Server) -> None:
    name = f"Disposable {uuid.uuid4().hex[:6]}"
    case_id = server.create_case(name)
    sign_in(page, *server.admin)
    item = case_item(page, name)
    expect(item).to_have_count(1)

    item.get_by_role("button", name=f"Delete {name}", exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=f"Delete case {name}?", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Cancel", exact=True).click()
    expect(dialog).to_have_count(0)
    expect(item).to_have_count(1)
    assert server.api("GET", f"/cases/{case_id}").status_code == 200

    item.get_by_role("button", name=f"Delete {name}", exact=True).click()
    expect(dialog.get_by_role("heading", name=f"Delete case {name}?", exact=True)).to_be_visible()
    dialog.get_by_role("button", name="Delete permanently", exact=True).click()
    expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)
    assert server.api("GET", f"/cases/{case_id}").status_code == 404


def test_a_viewer_is_offered_neither_deleting_nor_uploading(
    new_page: PageFactory, server: Server, analysed: AnalysedCase
) -> None:
    username, password = f"viewer-{uuid.uuid4().hex[:6]}", strong_password()
    viewer = server.add_user(username, password, "user")
    server.share(analysed.id, viewer["id"], "viewer")

    page = new_page()
    sign_in(page, username, password)
    item = case_item(page, analysed.name)
    expect(item).to_have_count(1)
    expect(page.get_by_role("button", name=re.compile(r"^Delete\b"))).to_have_count(0)

    item.get_by_role("link", name=analysed.name, exact=True).click()
    expect(page).to_have_url(re.compile(rf"/cases/{analysed.id}/?$"))
    expect(page.get_by_role("heading", name=analysed.name, level=1)).to_be_visible()
    signed_in_header(page)
    page.wait_for_load_state("networkidle")
    expect(page.locator("input[type=file]")).to_have_count(0)
    expect(page.get_by_label("Choose files", exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Analyse uploaded files", exact=True)).to_have_count(0)

    page.get_by_role("navigation").get_by_role("link", name="Jobs", exact=True).click()
    expect(job_article(page).get_by_role("status")).to_contain_text(analysed.phase)
    for action in ("Approve", "Cancel job", "Resume job"):
        expect(page.get_by_role("button", name=action, exact=True)).to_have_count(0)

"""Browser fixtures: a real gateway with every function in one process per test module (`server`),
headless Chromium (Debian's, driven by Playwright) per test module, and a fresh page per test at
1280x720 whose screenshot is kept in the test's temporary directory when the test fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.web import support
from tests.web.support import CHROMIUM, PHASES_FINAL, Server

VIEWPORT = {"width": 1280, "height": 720}
DEFAULT_TIMEOUT_MS = 15_000
PageFactory = Callable[[], Page]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``aima serve all`` in a temporary working directory, with a bootstrap admin (`Server`)."""
    if not support.INDEX.is_file():
        pytest.fail(support.NOT_BUILT)
    started = Server.start(tmp_path_factory.mktemp("web-server"))
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Module-scoped, not session-scoped: Playwright's sync driver keeps an asyncio loop running in
    the worker's main thread while it is open, and every later test module in that worker that
    calls ``asyncio.run`` would fail."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def new_page(
    browser: Browser, server: Server, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[PageFactory]:
    """Opens pages, each in a context of its own (its own storage: another signed-in user), at
    1280x720, en-US, downloads accepted, relative URLs against the server. A failed test's pages
    are photographed first (`pytest_runtest_makereport`)."""
    contexts = []

    def open_page() -> Page:
        context = browser.new_context(
            viewport=VIEWPORT, locale="en-US", accept_downloads=True, base_url=server.url
        )
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    request.node.web_pages = lambda: [p for c in contexts for p in c.pages]
    yield open_page
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_page: PageFactory) -> Page:
    return new_page()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failed test, a screenshot of each of its open pages into its temporary directory (the
    pages are still open: this runs before the fixtures' teardown); the paths go into the report."""
    outcome = yield
    report = outcome.get_result()
    pages = getattr(item, "web_pages", None)
    if report.when != "call" or not report.failed or pages is None:
        return
    folder = Path(item.funcargs["tmp_path"])  # type: ignore[attr-defined] - new_page asks for it
    saved = []
    for number, open_page in enumerate(pages(), start=1):
        path = folder / f"failure-{number}.png"
        try:
            open_page.screenshot(path=str(path), full_page=True)
        except Exception as exc:  # a crashed page: say so, keep the test's own failure
            saved.append(f"page {number} ({open_page.url}): no screenshot: {exc}")
            continue
        saved.append(f"page {number} ({open_page.url}): {path}")
    if saved:
        text = "\n".join(saved)
        print(f"\nscreenshots of {item.nodeid}:\n{text}")
        report.sections.append(("screenshots", text))


# --- an analysed case, made through the API ------------------------------------------------------


@dataclass(frozen=True)
class AnalysedCase:
    """A case of the admin holding the three sample files, analysed by one finished job."""

    id: str
    name: str
    job_id: str
    phase: str
    files: list[Path]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return support.write_media(tmp_path_factory.mktemp("web-media"))


@pytest.fixture(scope="module")
def analysed(server: Server, media: list[Path]) -> AnalysedCase:
    """Made through the API (tus uploads that wait for a job, then one job), so the pages that show
    results can be checked without depending on the upload page."""
    name = "Warehouse review"
    case_id = server.create_case(name)
    token = server.token(*server.admin)
    media_ids = [server.upload(case_id, path, token=token) for path in media]
    submitted = server.api("POST", f"/cases/{case_id}/jobs", json={"media_ids": media_ids})
    assert submitted.status_code == 201, submitted.text
    job_id = str(submitted.json()["id"])
    phase = server.wait_for_job(case_id, job_id, PHASES_FINAL, timeout=240.0)
    assert phase in support.PHASES_DONE, f"the job ended {phase}:\n{server.tail()}"
    return AnalysedCase(case_id, name, job_id, phase, media)

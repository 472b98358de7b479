"""Refresh the screenshots of the review workspace's main pages in ``docs/screenshots/``.

``make screenshots`` runs this.
Starts ``aima serve all`` on loopback with an empty embedded profile, makes a case of three small
generated files, a photograph of three faces of two people composed from packaged face photographs
and a spoken plea (espeak-ng), analysed by one job through the API, and photographs each main page
at 1280x720 in headless Chromium (Debian's), in English. Needs ``make web`` first.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from aima.samples import write_speech_wav
from aima.samples_faces import face_samples, heads, scene
from tests.web.support import CHROMIUM, INDEX, PHASES_FINAL, REPO, Server, write_media

OUT = REPO / "docs" / "screenshots"
PLEA = "Help me! Please let me go. Stop, you are hurting me."


def shoot(page: Page, name: str) -> None:
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(OUT / f"{name}.png"))
    print(f"docs/screenshots/{name}.png")


def main() -> int:
    if not INDEX.exists():
        print("build the web app first: make web", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        server = Server.start(workdir)
        try:
            case_id = server.create_case("Warehouse review")
            files = write_media(workdir / "media")
            photo, _ = scene(heads(face_samples(), ["obama", "biden", "hopper"]), 2, faces=3)
            photo.save(workdir / "media" / "people.jpg", quality=90)
            files.append(workdir / "media" / "people.jpg")
            files.append(write_speech_wav(workdir / "media" / "plea.wav", PLEA))
            media_ids = [server.upload(case_id, path) for path in files]
            job = server.api("POST", f"/cases/{case_id}/jobs", json={"media_ids": media_ids}).json()
            server.wait_for_job(case_id, job["id"], PHASES_FINAL, timeout=240.0)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
                page = browser.new_context(viewport={"width": 1280, "height": 720}, locale="en-US").new_page()
                page.goto(f"{server.url}/login")
                shoot(page, "login")
                page.get_by_label("Username").fill(server.admin[0])
                page.get_by_label("Password").fill(server.admin[1])
                page.get_by_role("button", name="Sign in").click()
                page.get_by_role("heading", name="Cases", level=1).wait_for()
                shoot(page, "cases")
                pages = [
                    ("files", ""),
                    ("jobs", "/jobs"),
                    ("reports", "/reports"),
                    ("persons", "/persons"),
                    ("findings", "/findings"),
                    ("members", "/members"),
                    ("media", f"/media/{media_ids[-1]}"),  # the plea: its transcript and timeline
                ]
                for name, path in pages:
                    page.goto(f"{server.url}/cases/{case_id}{path}")
                    page.get_by_role("heading", level=1).first.wait_for()
                    shoot(page, name)
                browser.close()
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

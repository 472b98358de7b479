"""The HTML report: wording, escaping, nothing fetched from outside, citations that resolve, images
embedded and the blurred note where a file is sensitive."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser

from aima.reports.html import BANNER, data_uri, render_html
from aima.reports.model import CaseReport, Statement
from tests.reports import sample
from tests.reports.conftest import Exported


class Page(HTMLParser):
    """Element ids, link targets, image sources, every URL-valued attribute, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []
        self.chunks: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name == "href" and value is not None:
                self.hrefs.append(value)
            if name == "src" and value is not None:
                self.srcs.append(value)
            if name in {"href", "src", "srcset", "action", "poster", "data", "formaction", "background"}:
                self.urls.append(value or "")

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)

    @property
    def text(self) -> str:
        return re.sub(r"\s+", " ", "".join(self.chunks))


def article(html: str, element_id: str) -> str:
    found = re.search(rf'<article class="[a-z]+" id="{element_id}">(.*?)</article>', html, re.DOTALL)
    assert found, element_id
    return found.group(1)


def test_the_page_says_these_are_indicators_for_review_not_verdicts(exported: Exported) -> None:
    page = Page(exported.text("report.html"))
    assert BANNER == "Indicators for human review: what models saw, not what a person is or did."
    assert BANNER in page.text
    assert "never a finding of fact about anyone" in page.text
    assert "Partial report: not every step finished" in page.text
    assert "None of these is a verdict." in page.text
    assert "never an identification" in page.text
    for heading in ("Summary", "Files", "Timeline", "Persons", "Indicators for review", "Chain of custody"):
        assert heading in page.text


def test_hostile_text_is_escaped(exported: Exported) -> None:
    html = exported.text("report.html")
    page = Page(html)
    assert "script" not in page.tags
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in html
    assert sample.HOSTILE in page.text


def test_nothing_is_fetched_from_outside_the_page(exported: Exported) -> None:
    html = exported.text("report.html")
    page = Page(html)
    assert page.hrefs
    assert all(href.startswith("#") for href in page.hrefs)
    assert page.srcs
    assert all(src.startswith("data:image/") for src in page.srcs)
    assert all(url.startswith(("#", "data:image/")) for url in page.urls)
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", html, re.IGNORECASE)
    assert "url(" not in html
    assert "@import" not in html
    assert "default-src 'none'; img-src data:" in html  # the Content-Security-Policy


def test_every_citation_links_to_its_entry(exported: Exported, report: CaseReport) -> None:
    page = Page(exported.text("report.html"))
    assert len(page.ids) == len(set(page.ids)), "an element id is used twice"
    targets = {href.removeprefix("#") for href in page.hrefs}
    assert targets <= set(page.ids)
    assert report.ids() <= set(page.ids), "every entry of the report has an anchor"
    cited = {citation for statement in report.narrative.statements for citation in statement.citations}
    assert cited <= targets
    for entry in report.timeline:
        assert entry.file in targets
        assert set(entry.person_ids) <= targets


def test_an_unknown_citation_is_text_not_a_dead_link(report: CaseReport) -> None:
    narrative = report.narrative.model_copy(
        update={"statements": [Statement(text="Odd.", citations=["T99", "T1"])]}
    )
    page = Page(render_html(report.model_copy(update={"narrative": narrative})))
    assert "#T99" not in page.hrefs
    assert "#T1" in page.hrefs
    assert "Odd. [T99, T1]" in page.text


def test_evidence_shows_file_time_and_frame(exported: Exported) -> None:
    html = exported.text("report.html")
    row = re.search(r'<tr id="I1">(.*?)</tr>', html, re.DOTALL)
    assert row
    text = Page(row.group(1)).text
    assert "F1 harbour interview.mp4, at 0:41.0, frame fr-0020" in text
    assert "confirmed by a reviewer" in text
    assert "rope visible at the wrists" in text
    assert "72 %" in text
    assert "qwen2-vl-7b 2024-09" in text


def test_images_are_embedded_and_a_sensitive_file_says_it_is_blurred(exported: Exported) -> None:
    html = exported.text("report.html")
    video, still, voicemail = article(html, "F1"), article(html, "F2"), article(html, "F3")
    assert base64.b64encode(sample.THUMBNAILS[sample.VIDEO]).decode() in video
    assert "data:image/jpeg;base64," + base64.b64encode(sample.THUMBNAILS[sample.STILL]).decode() in still
    assert "Blurred: frames of this file were scored as sensitive." in Page(still).text
    assert 'alt="Blurred thumbnail of stairwell.jpg"' in still
    assert "Blurred" not in video
    assert "no thumbnail" in voicemail
    anna, other = article(html, "P1"), article(html, "P2")
    assert base64.b64encode(sample.CROPS[sample.CROP_KEYS["P1"]]).decode() in anna
    assert "Blurred: from a file scored as sensitive." in Page(other).text
    assert "Blurred" not in anna


def test_only_pictures_become_data_uris() -> None:
    assert data_uri(None) is None
    assert data_uri(b"") is None
    assert data_uri(b"<svg onload='x'/>") is None
    assert (
        data_uri(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
        == "data:image/webp;base64," + base64.b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8 ").decode()
    )
    png = sample.THUMBNAILS[sample.VIDEO]
    assert (data_uri(png) or "").startswith("data:image/png;base64,")


def test_a_report_without_images_or_entries_still_renders(report: CaseReport) -> None:
    bare = report.model_copy(
        update={"timeline": [], "persons": [], "indicators": [], "gaps": [], "speakers": [], "partial": False}
    )
    page = Page(render_html(bare))
    assert "Nothing with a time was found." in page.text
    assert "No person was seen." in page.text
    assert "Partial report" not in page.text
    assert page.srcs == []

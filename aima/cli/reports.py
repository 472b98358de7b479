"""``aima report``: a case's signed, versioned reports (`aima.reports`) on the command line.

* ``aima report list CASE_ID``: one tab-separated line per version, oldest first: version, created,
  report id, job (``-``: asked for later), files, persons, indicators, gaps, ``partial`` or ``complete``;
* ``aima report show CASE_ID [--version N|latest] [--json]``: a short summary (counts, indicators by
  review state, whether the signature holds, the narrative), or the report's JSON;
* ``aima report export CASE_ID [--version N|latest] --format FORMAT [-o PATH]``: one rendering
  (``json``, ``csv-timeline``, ``csv-indicators``, ``csv-persons``, ``html``, ``pdf``) to stdout, to
  ``-o FILE`` or into ``-o FOLDER`` under its download name; ``--all -o FOLDER`` writes every format,
  the report's JSON Schema and the case's transcripts as WebVTT into a new or empty folder
  (`aima.reports.exports.write_all`). Pictures are blurred for files scored sensitive;
* ``aima report build CASE_ID``: builds, signs and stores the next version from the case's current
  results in this process (what ``POST /cases/{id}/reports`` asks the fuse function to do); a case
  without files has nothing to report on.

Works on the stores directly, in one tenant (``--tenant``, by default the bootstrap tenant), as the
other case commands do (`aima.cli.context`), and writes one audit record per call in the API's shape
(``via: cli``): ``case.read`` on ``case/<id>/reports`` or ``case/<id>/report/v<N>``; ``case.export``
on ``case/<id>/report/v<N>`` with the format(s) and version; ``case.update`` on ``case/<id>/reports``
with the version built. A command that fails after finding the case records ``failed``. Errors are
one line and exit 1: no such case, no report (or no such version), an output that cannot be written.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, cast

import click

from aima.cli import CliError
from aima.cli.context import CaseSession, Kernel, case_session
from aima.reports.exports import FORMATS, ReportFormat, render, write_all
from aima.reports.images import ReportImages
from aima.reports.model import CaseReport
from aima.storage.reports import ReportRepository

TENANT = click.option(
    "--tenant", default=None, help="Tenant name (default: the bootstrap tenant, AIMA_BOOTSTRAP_TENANT)."
)
LATEST = "latest"
VERSION = click.option(
    "--version", "version", default=LATEST, show_default=True, help="A report version (1, 2, ...) or latest."
)


class _Session(CaseSession):
    """One command's kernel, the case's reports and its audit records."""

    def __init__(self, k: Kernel, case_id: str) -> None:
        super().__init__(k, case_id)
        self.reports = ReportRepository(k.stores.documents)

    def report(self, version: str, action: str) -> CaseReport:
        """The case's report ``version`` (``latest``: the newest); records ``failed`` and stops with one
        line if there is none such."""
        wanted = _version_number(version)
        if wanted is None:
            report = self.reports.latest(self.tenant_id, self.case_id)
            missing = (
                f"case {self.case_id} has no report yet; build one with `aima report build {self.case_id}`"
            )
        else:
            report = self.reports.get(self.tenant_id, self.case_id, wanted)
            missing = f"case {self.case_id} has no report version {wanted}"
        if report is None:
            self.record(action, f"case/{self.case_id}/reports", failed="not-found", version=version)
            raise CliError(missing)
        return report

    def signature(self, report: CaseReport) -> str:
        """Whether the report's signature holds (a platform key, the content unchanged), in words."""
        from aima.identity.keys import KeyRing
        from aima.reports.custody import CustodyError, check_signature

        try:
            claims = check_signature(report, KeyRing.from_settings(self.k.settings, self.k.stores.db))
        except CustodyError as exc:
            return f"does not hold: {exc}"
        return f"valid (key {report.custody.key_id}, audit chain head at record {claims['head']['seq']})"


def _session(case_id: str, tenant: str | None) -> AbstractContextManager[_Session]:
    return case_session(_Session, case_id, tenant)


def _version_number(version: str) -> int | None:
    """None for ``latest``, else the version number; a usage error for anything else."""
    if version == LATEST:
        return None
    if not version.isdigit() or int(version) < 1:
        raise CliError(f"--version is a number from 1 or {LATEST}, not {version!r}")
    return int(version)


def _object(report: CaseReport) -> str:
    return f"case/{report.case_id}/report/v{report.version}"


@click.group()
def report() -> None:
    """A case's reports: list, show, export, build."""


@report.command("list")
@click.argument("case_id")
@TENANT
def list_reports(case_id: str, tenant: str | None) -> None:
    """The report versions of CASE_ID, oldest first."""
    with _session(case_id, tenant) as s:
        stored = [s.reports.get(s.tenant_id, case_id, n) for n in s.reports.versions(s.tenant_id, case_id)]
        found = [r for r in stored if r is not None]
        s.record("case.read", f"case/{case_id}/reports", versions=len(found))
    for r in found:
        counts = [len(r.files), len(r.persons), len(r.indicators), len(r.gaps)]
        fields = [f"v{r.version}", r.created_at.isoformat(), r.report_id, r.job_id or "-"]
        click.echo("\t".join([*fields, *map(str, counts), "partial" if r.partial else "complete"]))
    if not found:
        click.echo(f"no report yet; build one with `aima report build {case_id}`", err=True)


@report.command("show")
@click.argument("case_id")
@VERSION
@click.option("--json", "as_json", is_flag=True, help="Print the report's JSON instead of a summary.")
@TENANT
def show(case_id: str, version: str, as_json: bool, tenant: str | None) -> None:
    """A summary of a report of CASE_ID (the newest by default), or its JSON."""
    from aima.reports.schema import to_json

    _version_number(version)
    with _session(case_id, tenant) as s:
        found = s.report(version, "case.read")
        signature = "" if as_json else s.signature(found)
        s.record("case.read", _object(found), version=found.version)
    if as_json:
        click.echo(to_json(found), nl=False)
        return
    for line in _summary(found, signature):
        click.echo(line)


def _summary(r: CaseReport, signature: str) -> Iterator[str]:
    """A few lines: what the report is, what it holds, its signature and its narrative."""
    yield f"report v{r.version} of case {r.case_id} ({r.case_name!r}), {r.report_id}"
    made = f"made {r.created_at.isoformat()}"
    yield f"  {made}, job {r.job_id or '- (asked for later)'}" + (", partial" if r.partial else "")
    categories = ", ".join(f"{n} {c}" for c, n in sorted(Counter(i.category for i in r.indicators).items()))
    yield (
        f"  {len(r.files)} file(s), {len(r.speakers)} speaker(s), {len(r.persons)} person(s), "
        f"{len(r.timeline)} timeline entries, {len(r.indicators)} indicator(s) for review"
        + (f" ({categories})" if categories else "")
        + f", {len(r.gaps)} gap(s)"
    )
    if r.indicators:
        states = Counter(i.review.decision for i in r.indicators)
        yield "  reviews: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    if r.context:
        first = r.context.splitlines()[0]
        yield f"  context: {first[:100]}" + ("…" if len(first) > 100 or "\n" in r.context else "")
    yield f"  signature: {signature}"
    for statement in r.narrative.statements:
        yield f"  - {statement.text} [{', '.join(statement.citations)}]"


@report.command("export")
@click.argument("case_id")
@VERSION
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None, help="The rendering to write.")
@click.option(
    "--all", "every", is_flag=True, help="Every format, the JSON Schema and the transcripts (WebVTT) into -o."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="A file, or a folder for the download name (--all: a new or empty folder); default: stdout.",
)
@TENANT
def export(
    case_id: str, version: str, fmt: str | None, every: bool, output: Path | None, tenant: str | None
) -> None:
    """Write a report of CASE_ID (the newest by default) in one format, or --all of them."""
    if every == (fmt is not None):
        raise CliError("give either --format FORMAT or --all")
    if every and output is None:
        raise CliError("--all writes a folder: give it with -o FOLDER")
    if every and output is not None and output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise CliError(f"-o {output} is not a new or empty folder")
    _version_number(version)
    with _session(case_id, tenant) as s:
        found = s.report(version, "case.export")
        try:
            if every:
                assert output is not None
                written = _write_all(s, found, output)
                suffixes = sorted({path.suffix.lstrip(".") for path in written})
                detail: dict[str, Any] = {"formats": suffixes, "files": len(written)}
            else:
                target = _write_one(s, found, cast(ReportFormat, fmt), output)
                detail = {"format": fmt}
        except OSError as exc:
            s.record("case.export", _object(found), failed="not-written", version=found.version)
            raise CliError(f"cannot write {exc.filename or output}: {exc.strerror}") from None
        s.record("case.export", _object(found), version=found.version, **detail)
    if every:
        for path in written:
            click.echo(str(path))
    elif target is not None:
        click.echo(str(target))


def _images(s: _Session, found: CaseReport) -> ReportImages:
    return ReportImages(s.k.stores.objects, found)


def _write_one(s: _Session, found: CaseReport, fmt: ReportFormat, output: Path | None) -> Path | None:
    """Render one format to ``output`` (a file, or a folder for its download name) or stdout; the path
    written (None: stdout)."""
    images = _images(s, found)
    body, _media_type, filename = render(found, fmt, thumbnail=images.thumbnail, crop=images.crop)
    if output is None:
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return None
    target = output / filename if output.is_dir() else output
    target.write_bytes(body)
    return target


def _write_all(s: _Session, found: CaseReport, folder: Path) -> list[Path]:
    from aima.storage.speakers import CaseSpeakerRepository
    from aima.storage.transcripts import TranscriptRepository

    documents = s.k.stores.documents
    transcripts = {
        t.media_id: t for t in TranscriptRepository(documents).latest_for_case(s.tenant_id, s.case_id)
    }
    names = CaseSpeakerRepository(documents).display_names(s.tenant_id, s.case_id)
    images = _images(s, found)
    return write_all(
        found,
        folder,
        transcripts=transcripts,
        speaker_names=names,
        thumbnail=images.thumbnail,
        crop=images.crop,
    )


@report.command("build")
@click.argument("case_id")
@TENANT
def build(case_id: str, tenant: str | None) -> None:
    """Build, sign and store the next report version of CASE_ID from its current results (after reviewer
    decisions or corrections), in this process; prints its version and summary."""
    from aima.access.scope import Scope
    from functions.fuse.spec import ReportBuilder, pipeline_of  # the composition root may name a function
    from functions.runtime.deps import Deps
    from functions.runtime.spec import discover

    with _session(case_id, tenant) as s:
        if not s.k.media.list(Scope.for_case(s.tenant_id, case_id, s.k.actor.name), case_id):
            s.record("case.update", f"case/{case_id}/reports", failed="no-media")
            raise CliError(f"case {case_id} has no files yet; nothing to report on")
        deps = Deps(s.k.settings, stores=s.k.stores)
        try:
            built = ReportBuilder(deps, pipeline_of(discover())).build(s.tenant_id, case_id, None)
        except LookupError as exc:
            s.record("case.update", f"case/{case_id}/reports", failed="not-found")
            raise CliError(str(exc)) from None
        finally:
            deps.close()
        s.record("case.update", f"case/{case_id}/reports", version=built.version, report_id=built.report_id)
        signature = s.signature(built)
    for line in _summary(built, signature):
        click.echo(line)

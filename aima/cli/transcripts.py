"""``aima transcript export``: a media file's transcript as WebVTT, SRT or JSON (`aima.subtitles`).

Works on the stores directly, in one tenant (``--tenant``, by default the bootstrap tenant), as the
admin commands do (`aima.cli.context`), and writes one ``case.export`` audit record per export, in
the same shape as the API's (object ``media/<id>/transcript/v<N>``, the format and version in its
detail). Output goes to stdout, or to ``-o FILE`` (a folder: the export's download name in it).
Errors are one line and exit 1: no such case, no transcript (or version), a transcript that was not
run or failed (its reason; it still exports as JSON), a file that cannot be written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import click

from aima.access.scope import Scope
from aima.cli import CliError
from aima.cli.context import Kernel
from aima.settings import load_settings
from aima.storage.speakers import CaseSpeakerRepository
from aima.storage.transcripts import TranscriptRepository
from aima.subtitles import ExportFormat, download_name, render


@contextmanager
def _kernel(tenant: str | None) -> Iterator[Kernel]:
    k = Kernel(load_settings(), tenant)
    try:
        yield k
    finally:
        k.close()


@click.group()
def transcript() -> None:
    """Export transcripts."""


@transcript.command("export")
@click.argument("case_id")
@click.argument("media_id")
@click.option("--format", "fmt", type=click.Choice(["vtt", "srt", "json"]), default="vtt", show_default=True)
@click.option("--version", "version", type=click.IntRange(min=1), default=None, help="Default: the latest.")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=True),
    default=None,
    help="Write to this file (or into this folder under the export's name) instead of stdout.",
)
@click.option(
    "--tenant", default=None, help="Tenant name (default: the bootstrap tenant, AIMA_BOOTSTRAP_TENANT)."
)
def export(
    case_id: str, media_id: str, fmt: str, version: int | None, output: Path | None, tenant: str | None
) -> None:
    """Export the transcript of MEDIA_ID in CASE_ID as WebVTT, SRT or JSON (audited as an export)."""
    chosen = cast(ExportFormat, fmt)
    with _kernel(tenant) as k:
        actor = k.actor
        scope = Scope.for_case(actor.tenant_id, case_id, actor.name)
        if k.cases.get(scope, case_id) is None:
            raise CliError(f"no case {case_id}")
        transcripts = TranscriptRepository(k.stores.documents)
        if version is None:
            found = transcripts.latest(actor.tenant_id, case_id, media_id)
            missing = f"no transcript of media {media_id} in case {case_id}"
        else:
            found = transcripts.get(actor.tenant_id, case_id, media_id, version)
            missing = f"no transcript version {version} of media {media_id} in case {case_id}"
        if found is None:
            raise CliError(missing)
        if chosen != "json" and found.status != "completed":
            state = "was not run" if found.status == "not_run" else "failed"
            reason = f": {found.reason}" if found.reason else ""
            raise CliError(
                f"transcript version {found.version} {state}{reason} (no subtitles; --format json has it)"
            )
        names = CaseSpeakerRepository(k.stores.documents).display_names(actor.tenant_id, case_id)
        versions = transcripts.versions(actor.tenant_id, case_id, media_id) if chosen == "json" else []
        body = render(found, chosen, names, versions=versions, exported_by=actor.user_id or actor.name)
        target = output
        if target is not None and target.is_dir():
            media = k.media.get(scope, media_id)
            target = target / download_name(found, chosen, media.filename if media is not None else None)
        k.audit.record_now(
            tenant_id=actor.tenant_id,
            actor=actor.name,
            action="case.export",
            outcome="allowed",
            object=f"media/{media_id}/transcript/v{found.version}",
            case_id=case_id,
            detail={"via": "cli", "format": chosen, "version": found.version},
        )
    if target is None:
        click.echo(body, nl=False)
        return
    try:
        target.write_text(body, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from exc
    click.echo(f"wrote {target}", err=True)

"""The ``aima`` command line: the composition root that wires settings, stores and the bus.

Errors end with a non-zero exit and one readable line on stderr: 2 for bad settings or
arguments, 1 for a failed operation.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path

import click

from aima.settings import SettingsError, load_settings


class CliError(click.ClickException):
    """An operation failed; shown as one line ``aima: <message>``."""

    exit_code = 1

    def show(self, file: object = None) -> None:
        click.echo(f"aima: {self.message}", err=True)


LAZY = {
    "audit": "aima.cli.admin:audit",
    "case": "aima.cli.admin:case",
    "config": "aima.cli.admin:config",
    "dev": "aima.cli.dev:dev",
    "job": "aima.cli.jobs:job",
    "media": "aima.cli.admin:media",
    "persons": "aima.cli.persons:persons",
    "report": "aima.cli.reports:report",
    "review": "aima.cli.review:review",
    "retention": "aima.cli.retention:retention",
    "search": "aima.cli.search:search_command",
    "serve": "aima.cli.serve:serve_command",
    "transcript": "aima.cli.transcripts:transcript",
    "upload": "aima.cli.upload:upload_command",
    "user": "aima.cli.admin:user",
}
"""Subcommands imported only when used: ``aima serve probe`` starts without the admin commands' imports."""


class LazyGroup(click.Group):
    """A group whose `LAZY` subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY and cmd_name not in self.commands:
            module_name, _, attribute = LAZY[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            assert isinstance(command, click.Command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
def cli() -> None:
    """AIMA: case-based analysis of images, video and audio."""


@cli.command()
def health() -> None:
    """Check every store and the bus; exit 1 if any is down."""
    from aima.cli.health import check_all

    settings = load_settings()
    report = asyncio.run(check_all(settings))
    click.echo(json.dumps(report.model_dump(mode="json"), indent=2))
    if report.status != "ok":
        sys.exit(1)


@cli.command()
def migrate() -> None:
    """Bring the relational schema and vector collections up to date."""
    from aima.storage.factory import Stores

    stores = Stores.open(load_settings(), migrate=True)
    stores.close()
    click.echo("schema and vector collections are up to date")


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--generate-samples",
    "samples_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the built-in sample media into this folder and analyse them too.",
)
@click.option(
    "--case", "--case-name", "case_name", default=None, help="Name of the new case (default: the time)."
)
@click.option("--context", default=None, help="The analyst's context for the case, sent with the analysis.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the report in every format (default: DATA_DIR/reports/CASE/vN).",
)
@click.option(
    "--language",
    type=click.Choice(["auto", "de", "en"]),
    default="auto",
    show_default=True,
    help="The language spoken in the media; auto detects it per segment.",
)
@click.option(
    "--profile",
    type=click.Choice(["embedded", "cluster"]),
    default=None,
    help="embedded (every step in this process) or cluster (the running functions of `aima dev up` "
    "or a cluster; its addresses from AIMA_* or .aima-dev/env). Default: AIMA_PROFILE.",
)
def analyze(
    paths: tuple[Path, ...],
    samples_dir: Path | None,
    case_name: str | None,
    context: str | None,
    out: Path | None,
    language: str,
    profile: str | None,
) -> None:
    """Put media into a new case, run every pipeline step and write the case's report."""
    from aima.cli.analyze import AnalysisRefused, run_analysis
    from aima.samples import generate
    from aima.samples_faces import SamplesUnavailable, write_face_samples

    files = list(paths)
    if samples_dir is not None:
        files += generate(samples_dir)
        try:
            files += write_face_samples(samples_dir)
        except SamplesUnavailable as exc:
            click.echo(f"no samples with people: {exc}", err=True)
    if not files:
        raise click.UsageError("give media paths or --generate-samples DIR")
    for path in files:
        try:
            readable = path.is_file()
        except OSError as exc:  # a name too long for the file system, say
            raise CliError(f"not a readable file: {str(path)[:200]}: {exc.strerror}") from None
        if not readable:
            raise CliError(f"not a readable file: {path}")
    if out is not None and out.exists() and any(out.iterdir()):
        raise CliError(f"--out {out} is not empty; give a new or empty folder")
    overrides: dict[str, str] = {}
    if profile == "cluster":
        _use_dev_stack_env()
    if profile is not None:
        overrides["profile"] = profile
    try:
        asyncio.run(
            run_analysis(
                load_settings(**overrides),
                files,
                case_name=case_name,
                echo=click.echo,
                out=out,
                context=context,
                language=None if language == "auto" else language,
            )
        )
    except (AnalysisRefused, ValueError) as exc:
        raise CliError(str(exc)) from exc


def _use_dev_stack_env(folder: Path = Path(".aima-dev")) -> None:
    """Take the addresses of a stack `aima dev up` started here, unless the environment names a cluster."""
    import os

    from aima.cli.devstack import read_env_file

    env_file = folder / "env"
    if "AIMA_DATABASE_URL" in os.environ or not env_file.is_file():
        return
    for name, value in read_env_file(env_file).items():
        os.environ.setdefault(name, value)


def main() -> None:
    """Entry point: turn settings errors into one line and exit 2."""
    try:
        cli.main(standalone_mode=False)
    except SettingsError as exc:
        click.echo(f"aima: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aima: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        if isinstance(exc, CliError):
            exc.show()
        else:
            click.echo(f"aima: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)

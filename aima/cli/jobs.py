"""``aima job``: a tenant's analysis jobs on the command line, as the gateway's job routes show them
(`aima.job_view.JobView`).

* ``aima job list [--case CASE_ID] [--json]``: one tab-separated line per job, newest first: id, case,
  phase, priority, progress in percent, files, created, reference (``-``: none); every case of the
  tenant without ``--case``;
* ``aima job show JOB [--json]``: a short summary (phase, steps, progress and time left, the step
  states, estimate and actual, approval, report), or the view's JSON;
* ``aima job cancel JOB``: stop scheduling it; its steps not ended are cancelled, what finished is kept;
* ``aima job approve JOB``: approve a job awaiting approval; it goes back to the queue;
* ``aima job estimate PATH_OR_MEDIA... [--steps S,S] [--gpu-profile NAME] [--json]``: what a job on
  those files would cost under the tenant's configuration, as the scheduler estimates it. A path is
  typed from its first bytes (ingest's content sniffing) and its duration guessed from its size;
  nothing is uploaded. Anything else names a stored media file of the tenant (its probed duration
  counts).

Works on the stores directly, in one tenant (``--tenant``, by default the bootstrap tenant), as the
other case commands do (`aima.cli.context`), and writes one audit record per case touched in the API's
shape (``via: cli``): ``case.read`` on ``case/<id>/jobs`` (a list, an estimate of stored files) or
``case/<id>/job/<job>`` (show); ``analysis.run`` on ``case/<id>/job/<job>`` (cancel, approve; ``failed``
when the job's phase does not allow it). Errors are one line and exit 1: no such case, job, file or
media, a phase that does not allow the move, an unknown GPU profile or step.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from aima.access.scope import Scope
from aima.cli import CliError
from aima.cli.context import Kernel, record_command
from aima.domain import Job, JobPhase, MediaKind, Step
from aima.estimates import Estimate, MediaFacts, calibration, facts_of
from aima.job_view import JobView, JobViews, UnknownProfile, job_estimate
from aima.storage.job_queue import JobQueue
from aima.storage.jobs import InvalidTransition

TENANT = click.option(
    "--tenant", default=None, help="Tenant name (default: the bootstrap tenant, AIMA_BOOTSTRAP_TENANT)."
)
JSON = click.option("--json", "as_json", is_flag=True, help="Print the JSON the API answers instead.")


class _Jobs:
    """One command's kernel, the tenant's scope, its job views and its audit records."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.tenant_id = k.actor.tenant_id
        self.scope = Scope.for_tenant(self.tenant_id, k.actor.name)
        self.views = JobViews(k.stores.db, k.stores.documents)

    @property
    def by(self) -> str:
        """Who cancels or approves: the acting user's id, else the CLI's operator name."""
        return self.k.actor.user_id or self.k.actor.name

    def job(self, job_id: str) -> Job:
        """The tenant's job ``job_id`` (a parent job); one line and exit 1 if there is none."""
        found = self.views.parent(self.scope, job_id)
        if found is None:
            raise CliError(f"no job {job_id}")
        return found

    def record(
        self, action: str, case_id: str, object: str, *, failed: str | None = None, **detail: Any
    ) -> None:
        """An audit record of the command, as the API writes one (``via: cli``)."""
        record_command(self.k, action, case_id, object, failed=failed, **detail)


@contextmanager
def _session(tenant: str | None) -> Iterator[_Jobs]:
    from aima.settings import load_settings

    k = Kernel(load_settings(), tenant)
    try:
        yield _Jobs(k)
    finally:
        k.close()


def _object(job: Job | JobView) -> str:
    return f"case/{job.case_id}/job/{job.id}"


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group()
def job() -> None:
    """Analysis jobs: list, show, cancel, approve, estimate."""


@job.command("list")
@click.option("--case", "case_id", default=None, help="Only this case's jobs (default: every case).")
@JSON
@TENANT
def list_jobs(case_id: str | None, as_json: bool, tenant: str | None) -> None:
    """The tenant's jobs (or one case's), newest first."""
    with _session(tenant) as s:
        if case_id is not None:
            if s.k.cases.get(s.scope, case_id) is None:
                raise CliError(f"no case {case_id}")
            case_ids = [case_id]
        else:
            case_ids = [str(case["id"]) for case in s.k.cases.list(s.scope)]
        found: list[JobView] = []
        for case in case_ids:
            views = s.views.parents(s.scope, case)
            if views or case_id is not None:
                s.record("case.read", case, f"case/{case}/jobs", jobs=len(views))
            found += views
    found.sort(key=lambda view: view.created_at, reverse=True)
    if as_json:
        _echo_json({"items": [view.model_dump(mode="json") for view in found]})
        return
    for view in found:
        fields = [view.id, view.case_id, view.phase.value, view.priority.value, f"{view.progress * 100:.0f}%"]
        fields += [str(view.files), view.created_at.isoformat(), view.reference or "-"]
        click.echo("\t".join(fields))
    if not found:
        click.echo("no jobs yet", err=True)


@job.command("show")
@click.argument("job_id")
@JSON
@TENANT
def show(job_id: str, as_json: bool, tenant: str | None) -> None:
    """A summary of JOB_ID, or its JSON."""
    with _session(tenant) as s:
        found = s.job(job_id)
        view = s.views.view(s.scope, found)
        s.record("case.read", view.case_id, _object(view), phase=view.phase.value)
    if as_json:
        _echo_json(view.model_dump(mode="json"))
        return
    for line in summary(view):
        click.echo(line)


def summary(view: JobView) -> Iterator[str]:
    """A few readable lines about a job."""
    yield (
        f"job {view.id} of case {view.case_id}: {view.phase.value}, priority {view.priority.value}, "
        f"{view.files} file(s)"
    )
    yield "  steps: " + ", ".join(step.value for step in view.steps)
    left = "unknown" if view.eta_s is None else f"{view.eta_s:.0f} s of model time"
    yield f"  progress: {view.progress * 100:.0f} % of the planned steps ended; left: {left}"
    for step, states in sorted(view.counts.items()):
        yield f"  {step}: " + ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
    if view.estimate is not None:
        yield "  estimate: " + _cost(view.estimate)
    if view.actual is not None:
        error = "" if view.error is None else f" (the estimate was {view.error * 100:.0f} % off)"
        yield "  actual: " + _cost(view.actual) + error
    approval = view.approval
    if approval.approved_by is not None:
        when = approval.approved_at.isoformat() if approval.approved_at else "-"
        yield f"  approved by {approval.approved_by} at {when}"
    elif approval.required:
        yield "  approval: asked for, not given yet"
    if view.report is not None:
        yield f"  report: v{view.report.version} ({view.report.report_id})"
    if view.reason:
        yield f"  reason: {view.reason}"
    if view.reference:
        yield f"  reference: {view.reference}"
    times = [f"created {view.created_at.isoformat()}"]
    times += [f"started {view.started_at.isoformat()}"] if view.started_at else []
    times += [f"finished {view.finished_at.isoformat()}"] if view.finished_at else []
    yield "  " + ", ".join(times)


def _cost(cost: dict[str, Any]) -> str:
    """An estimate (or what a job used) in one line."""

    def number(key: str) -> float:
        value = cost.get(key)
        return float(value) if isinstance(value, int | float) else 0.0

    price = " ".join(filter(None, [f"{number('cost'):.2f}", str(cost.get("currency") or "")]))
    return (
        f"model {number('model_s'):.1f} s, wall {number('wall_s'):.1f} s, GPU {number('gpu_s'):.1f} s, "
        f"{price} under {cost.get('gpu_profile') or '-'}"
    )


@job.command("cancel")
@click.argument("job_id")
@TENANT
def cancel(job_id: str, tenant: str | None) -> None:
    """Stop JOB_ID: its steps not ended are cancelled; what finished is kept."""
    with _session(tenant) as s:
        found = s.job(job_id)
        try:
            if found.phase.final:  # refused here, before the kernel logs a refused move
                raise InvalidTransition(found.phase.value)
            moved = s.views.jobs.cancel(s.scope, found.id, by=s.by)
        except InvalidTransition:
            phase = (s.views.parent(s.scope, found.id) or found).phase.value
            s.record("analysis.run", found.case_id, _object(found), failed="invalid-transition", phase=phase)
            raise CliError(f"job {job_id} is {phase}; a finished job cannot be cancelled") from None
        s.record("analysis.run", found.case_id, _object(found), phase=moved.phase.value, cancelled=True)
    click.echo(f"job {job_id}: {moved.phase.value}")


@job.command("approve")
@click.argument("job_id")
@TENANT
def approve(job_id: str, tenant: str | None) -> None:
    """Approve JOB_ID, which awaits approval: it goes back to the queue."""
    with _session(tenant) as s:
        found = s.job(job_id)
        try:
            if found.phase is not JobPhase.AWAITING_APPROVAL:
                raise InvalidTransition(found.phase.value)
            moved = s.views.jobs.approve(s.scope, found.id, by=s.by)
        except InvalidTransition:
            phase = (s.views.parent(s.scope, found.id) or found).phase.value
            s.record("analysis.run", found.case_id, _object(found), failed="invalid-transition", phase=phase)
            raise CliError(f"job {job_id} is {phase}; only a job awaiting approval can be approved") from None
        s.record("analysis.run", found.case_id, _object(found), phase=moved.phase.value, approved=True)
    click.echo(f"job {job_id}: approved by {moved.approved_by}; {moved.phase.value}")


@job.command("estimate")
@click.argument("items", nargs=-1, required=True, metavar="PATH_OR_MEDIA...")
@click.option("--steps", default=None, help="Comma-separated steps (default: the tenant's analysis.steps).")
@click.option("--gpu-profile", default=None, help="A name in gpu.profiles (default: jobs.gpu_profile).")
@JSON
@TENANT
def estimate(
    items: tuple[str, ...], steps: str | None, gpu_profile: str | None, as_json: bool, tenant: str | None
) -> None:
    """What a job on these files (paths, or ids of stored media) would cost; nothing is uploaded."""
    chosen = _steps(steps)
    with _session(tenant) as s:
        facts: list[MediaFacts] = []
        cases: dict[str, int] = {}
        for item in items:
            path = Path(item)
            if path.exists():
                facts.append(_file_facts(path))
                continue
            media = s.k.media.get(s.scope, item)
            if media is None:
                raise CliError(f"no file or stored media {item}")
            facts.append(facts_of(media))
            cases[media.case_id] = cases.get(media.case_id, 0) + 1
        config = s.k.config.effective(s.tenant_id)
        queue = JobQueue(s.k.stores.db)
        try:
            result = job_estimate(
                config,
                facts,
                chosen,
                gpu_profile,
                calibration=lambda name: calibration(queue.finished_pairs(name)),
            )
        except UnknownProfile as exc:
            raise CliError(str(exc)) from None
        for case_id, files in cases.items():
            s.record("case.read", case_id, f"case/{case_id}/jobs", estimate=True, files=files)
    if as_json:
        _echo_json(result.model_dump(mode="json"))
        return
    for line in estimate_lines(result):
        click.echo(line)


def estimate_lines(result: Estimate) -> Iterator[str]:
    """A header line, then one tab-separated line per step: units, model, GPU seconds and cost."""
    basis = {"probed": "measured durations", "size": "durations guessed from sizes"}.get(
        result.basis, result.basis
    )
    yield (
        f"{result.files} file(s), {result.media_s:.1f} s of audio and video ({basis}), "
        f"under {result.gpu_profile}: "
        f"model {result.model_s:.1f} s, wall {result.wall_s:.1f} s, GPU {result.gpu_s:.1f} s, "
        f"{result.cost:.2f} {result.currency}"
    )
    for step, cost in result.per_step.items():
        yield "\t".join(
            [
                "  " + step,
                f"{cost.units:g} units",
                f"{cost.model_s:.1f} s",
                f"GPU {cost.gpu_s:.1f} s",
                f"{cost.cost:.2f}",
            ]
        )


def _steps(steps: str | None) -> list[str] | None:
    """The steps named by ``--steps``; one line and exit 1 for an unknown one."""
    if steps is None:
        return None
    names = [name.strip() for name in steps.split(",") if name.strip()]
    known = {step.value for step in Step}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise CliError(f"--steps takes steps out of {', '.join(step.value for step in Step)}, not {steps!r}")
    return list(dict.fromkeys(names))


def _file_facts(path: Path) -> MediaFacts:
    """What a file on disk is, from its first bytes (as ingest types it), and its size."""
    from functions.ingest.sniff import (
        HEAD_BYTES,
        UnsupportedMedia,
        sniff,
    )  # the composition root may name a function

    if not path.is_file():
        raise CliError(f"{path} is not a file")
    try:
        with path.open("rb") as handle:
            head = handle.read(HEAD_BYTES)
        size = path.stat().st_size
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        sniffed = sniff(head)
    except UnsupportedMedia as exc:
        raise CliError(f"{path}: {exc.reason}") from None
    return MediaFacts(
        media_id=str(path), kind=MediaKind(sniffed.kind), size=size, content_type=sniffed.content_type
    )


@job.command("resume")
@click.argument("job_id")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the report in every format (default: DATA_DIR/reports/CASE/vN).",
)
@click.option(
    "--timeout", type=click.FloatRange(min=1), default=3600.0, show_default=True, help="Seconds to wait."
)
def resume(job_id: str, out: Path | None, timeout: float) -> None:
    """Pick up a job where it stopped: a cancelled or failed one, or one whose ``aima analyze`` died.

    Runs the analysis functions in this process (as ``aima analyze`` does) until the job ends; only
    its unfinished steps run (docs/jobs.md). Writes the job's report like ``aima analyze``.
    """
    import asyncio

    from aima.cli.analyze import export_report
    from aima.cli.resume import ResumeRefused, resume_job
    from aima.settings import load_settings

    settings = load_settings()
    try:
        ended, report = asyncio.run(resume_job(settings, job_id, echo=click.echo, timeout=timeout))
    except ResumeRefused as exc:
        raise CliError(str(exc)) from None
    if report is not None:
        folder = out or settings.data_dir / "reports" / report.case_id / f"v{report.version}"
        for line in export_report(settings, report, folder, actor="aima-cli", via="aima job resume"):
            click.echo(line)
    if ended.phase is JobPhase.FAILED:
        raise CliError(f"job {job_id} failed: {ended.reason}")

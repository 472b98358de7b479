"""``aima review``: the findings of a case (indicators for review) and the reviewer's decisions on them.

* ``aima review list CASE_ID [--state STATE] [--media MEDIA_ID] [--step STEP]``: one line per finding,
  by confidence: id, step, kind, label, confidence, review state, media, indicator key; then one line
  per decision whose indicator no finding has any more (``no longer found``, key, decision, reason);
* ``aima review decide CASE_ID FINDING_ID confirm|reject|unclear --reason TEXT``: records the decision
  on the finding's indicator (`aima.storage.reviews`); prints the finding, the decision and the key.

Works on the stores directly, in one tenant (``--tenant``, by default the bootstrap tenant), as the
persons commands do, and writes one audit record per call in the same shape as the API's
(``case.read`` on ``case/<id>/findings``; ``case.update`` on ``finding/<id>`` with the decision, reason
and key; a refused decision is recorded ``failed``). The reviewer is the CLI's actor. Errors are one
line and exit 1: no such case or finding, an unknown decision or state, a missing, blank, too long
or multi-line reason.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import click

from aima.cli import CliError
from aima.cli.context import CaseSession, Kernel, case_session
from aima.domain import Step
from aima.storage.reviews import UNREVIEWED, ReviewError, ReviewRepository, clean_reason

TENANT = click.option(
    "--tenant", default=None, help="Tenant name (default: the bootstrap tenant, AIMA_BOOTSTRAP_TENANT)."
)
VERBS = {"confirm": "confirmed", "reject": "rejected", "unclear": "unclear"}
STATES = ("confirmed", "rejected", "unclear", UNREVIEWED)


class _Session(CaseSession):
    """One command's kernel, repository, case and audit records."""

    def __init__(self, k: Kernel, case_id: str) -> None:
        super().__init__(k, case_id)
        self.reviews = ReviewRepository(k.stores.documents)


def _session(case_id: str, tenant: str | None) -> AbstractContextManager[_Session]:
    return case_session(_Session, case_id, tenant)


@click.group()
def review() -> None:
    """Findings of a case and the reviewer's decisions on them: list, decide."""


@review.command("list")
@click.argument("case_id")
@click.option("--state", default=None, help=f"Only findings in this state ({', '.join(STATES)}).")
@click.option("--media", "media_id", default=None, help="Only findings of this media file.")
@click.option(
    "--step", default=None, help="Only findings of this pipeline step (vision, pose, phrases, ...)."
)
@TENANT
def list_findings(
    case_id: str, state: str | None, media_id: str | None, step: str | None, tenant: str | None
) -> None:
    """The findings of CASE_ID with their review state, then decisions whose indicator is gone."""
    if state is not None and state not in STATES:
        raise CliError(f"the state is one of {', '.join(STATES)}")
    if step is not None and step not in {s.value for s in Step}:
        raise CliError(f"no step {step}")
    with _session(case_id, tenant) as s:
        findings = s.reviews.findings(
            s.tenant_id, case_id, media_id=media_id, step=Step(step) if step else None
        )
        states = s.reviews.review_state(s.tenant_id, case_id, findings)
        shown = [f for f in findings if state is None or states[f.finding.id] == state]
        keys = {f.key for f in s.reviews.findings(s.tenant_id, case_id)}
        gone = [
            r
            for r in s.reviews.for_case(s.tenant_id, case_id)
            if r.indicator_key not in keys
            and (state is None or r.decision == state)
            and (media_id is None or r.media_id == media_id)
            and (step is None or r.current.finding.step.value == step)
        ]
        filters = {"state": state, "media_id": media_id, "step": step}
        s.record(
            "case.read",
            f"case/{case_id}/findings",
            findings=len(shown),
            no_longer_found=len(gone),
            **{k: v for k, v in filters.items() if v is not None},
        )
    for keyed in shown:
        f = keyed.finding
        fields = [f.id, f.step.value, keyed.kind or "-", f.label, f"{f.confidence:.2f}"]
        click.echo("\t".join([*fields, states[f.id], keyed.media_id, keyed.key]))
    for r in gone:
        click.echo("\t".join(["no longer found", r.indicator_key, r.decision, r.current.reason]))


@review.command("decide")
@click.argument("case_id")
@click.argument("finding_id")
@click.argument("decision")
@click.option("--reason", default=None, help="Why (required; one line, at most 2000 characters).")
@TENANT
def decide(case_id: str, finding_id: str, decision: str, reason: str | None, tenant: str | None) -> None:
    """Record DECISION (confirm, reject or unclear) on the indicator of FINDING_ID of CASE_ID."""
    with _session(case_id, tenant) as s:
        target = f"finding/{finding_id}"
        verdict = VERBS.get(decision)
        try:
            if verdict is None:
                raise ReviewError(f"the decision is one of {', '.join(VERBS)}")
            text = clean_reason(reason or "")
        except ReviewError as exc:
            s.record("case.update", target, failed="invalid-review", decision=decision)
            raise CliError(str(exc)) from None
        finding = s.reviews.finding(s.tenant_id, case_id, finding_id)
        if finding is None:
            s.record("case.update", target, failed="not-found", decision=verdict)
            raise CliError(f"no finding {finding_id} in case {case_id}")
        made = s.reviews.decide(finding, verdict, text, reviewer=s.k.actor.name)
        s.record("case.update", target, decision=verdict, reason=text, indicator_key=finding.key)
    click.echo("\t".join([finding_id, made.decision, finding.key]))

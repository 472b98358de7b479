"""The AnalysisJob handlers: plain async functions of a resource body that write a `kopf.Patch`.

They hold no state of their own: what the operator knows of a job is in the resource's status
(``jobId``, ``submitted``, ``conditions``). Each takes the `JobClient` as a parameter; ``main.py``
registers them with Kopf and the tests call them directly with CRD bodies.

* `create` submits the job with the reference ``{namespace}/{name}/{uid}``, so a retried create
  never submits twice, and records the submitted spec;
* `poll` (a timer) mirrors the job into the status, approves it when it awaits an approval that was
  given, patches only what changed and stops once the phase is final;
* `update` refuses a change of an immutable field with the condition ``ImmutableFieldChanged``;
  the job goes on as submitted;
* `approve` sends the approval given by the annotation ``aima.io/approved: "true"`` or by
  ``spec.approval.approved``, once;
* `delete` cancels the job (unless final) and, with ``deletePolicy: Delete``, deletes its results
  (if the gateway refuses that, the job is still cancelled and the refusal raised).

Gateway failures become `kopf.PermanentError` (a 4xx other than 408/409/425/429; a 409 on
submission too: the reference names another case's job) or `kopf.TemporaryError` (those, 5xx, no
answer) with the gateway's ``Retry-After`` as the delay.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import kopf
from pydantic import ValidationError

from aima.domain import FINAL_PHASES, JobPhase, StepState
from operators.analysisjob.client import Cost, GatewayError, JobClient, JobRequest, JobView
from operators.analysisjob.resource import APPROVAL_ANNOTATION

Clock = Callable[[], datetime]
Condition = dict[str, Any]

SUCCESSFUL_PHASES = frozenset({JobPhase.SUCCEEDED, JobPhase.PARTIALLY_SUCCEEDED})
IMMUTABLE_FIELDS = ("caseId", "media", "steps", "language", "context")
"""Fixed at submission; the CRD refuses a change where the API server runs CEL, `update` everywhere."""
SUBMISSION_ONLY_FIELDS = ("priority", "holdUntil")
"""Read at submission: the gateway has no route to change them on a submitted job."""
STEP_STATES = tuple(state.value for state in StepState)
POLLED_FIELDS = (
    "jobId",
    "phase",
    "progress",
    "progressText",
    "etaSeconds",
    "files",
    "steps",
    "estimate",
    "actual",
    "report",
    "conditions",
)
"""The status fields a poll owns; ``submitted`` and ``observedGeneration`` are the change handlers'."""
RETRY_DELAY = 15.0
MESSAGE_LIMIT = 1024

log = logging.getLogger(__name__)
Logger = kopf.Logger


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- handlers -------------------------------------------------------------------------------------


async def create(
    body: Mapping[str, Any],
    patch: kopf.Patch,
    client: JobClient,
    *,
    now: Clock = utcnow,
    logger: Logger = log,
) -> None:
    """Submit the job and record it: ``jobId``, ``submitted``, the job's status, ``Submitted=True``."""
    status = _status(body)
    if status.get("jobId"):
        return  # submitted already: the outcome of an earlier run of this handler was lost
    spec = _spec(body)
    conditions = list(status.get("conditions") or [])
    generation = _generation(body)
    try:
        request = job_request(body)
        view, created = await client.submit(str(spec["caseId"]), request)
    except ValidationError as exc:
        message = _message(f"the spec cannot be submitted: {exc.errors()[0]['msg']}")
        _refused(patch, conditions, "InvalidSpec", message, generation, now)
        raise kopf.PermanentError(message) from None
    except GatewayError as exc:
        if exc.status == HTTPStatus.CONFLICT:  # the reference names another case's job: never succeeds
            _refused(patch, conditions, "ReferenceTaken", _message(str(exc)), generation, now)
            raise kopf.PermanentError(str(exc)) from exc
        if exc.retryable:
            patch.status["conditions"] = set_condition(
                conditions, "Submitted", "False", "GatewayUnavailable", _message(str(exc)), generation, now
            )
        else:
            _refused(patch, conditions, _reason(exc), _message(str(exc)), generation, now)
        raise kopf_error(exc) from exc
    reason = "Created" if created else "AlreadySubmitted"
    message = f"job {view.id} in case {view.case_id}"
    conditions = set_condition(conditions, "Submitted", "True", reason, message, generation, now)
    logger.info("submitted: %s (%s)", message, reason)
    patch.status["submitted"] = {field: spec[field] for field in _SNAPSHOT if field in spec}
    patch.status["observedGeneration"] = generation
    _mirror(patch, body, {**status, "conditions": conditions}, view, generation, now, baseline=status)


async def poll(
    body: Mapping[str, Any],
    patch: kopf.Patch,
    client: JobClient,
    *,
    now: Clock = utcnow,
    logger: Logger = log,
) -> None:
    """Mirror the job into the status (no patch if nothing changed); approve it if it awaits approval."""
    status = _status(body)
    job_id = status.get("jobId")
    if not job_id or status.get("phase") in FINAL_PHASES:
        return
    case_id = submitted_case(body)
    generation = _generation(body)
    try:
        view = await client.get(case_id, str(job_id))
    except GatewayError as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            message = f"the gateway has no job {job_id} in case {case_id} (deleted there?)"
            logger.warning(message)
            conditions = set_condition(
                status.get("conditions") or [], "Failed", "True", "JobNotFound", message, generation, now
            )
            patch.status["phase"] = JobPhase.FAILED.value
            patch.status["conditions"] = set_condition(
                conditions, "Ready", "False", "JobNotFound", message, generation, now
            )
            return
        raise kopf_error(exc) from exc
    view = await _approve_if_awaiting(body, view, client, logger)
    _mirror(patch, body, status, view, generation, now)


async def update(
    body: Mapping[str, Any], patch: kopf.Patch, *, now: Clock = utcnow, logger: Logger = log
) -> None:
    """Refuse changes to immutable fields (condition, no resubmission); note changes that cannot apply."""
    status = _status(body)
    if not isinstance(status.get("submitted"), Mapping):
        return  # not submitted yet: `create` reads the spec as it is when it runs
    generation = _generation(body)
    before = list(status.get("conditions") or [])
    conditions = spec_conditions(body, before, generation, now)
    if conditions != before:
        refused = _find(conditions, "ImmutableFieldChanged")
        if refused is not None and refused["status"] == "True":
            logger.warning("refused: %s", refused["message"])
        patch.status["conditions"] = conditions
    if status.get("observedGeneration") != generation:
        patch.status["observedGeneration"] = generation


async def approve(
    body: Mapping[str, Any],
    patch: kopf.Patch,
    client: JobClient,
    *,
    now: Clock = utcnow,
    logger: Logger = log,
) -> None:
    """Send a given approval (annotation or spec) once the job awaits it; ``Approved`` follows the job."""
    status = _status(body)
    job_id = status.get("jobId")
    if not approval_granted(body) or not job_id or _is_true(status.get("conditions") or [], "Approved"):
        return  # nothing given, nothing submitted yet (`create` sends it along), or approved already
    try:
        view = await client.get(submitted_case(body), str(job_id))
    except GatewayError as exc:
        raise kopf_error(exc) from exc
    view = await _approve_if_awaiting(body, view, client, logger)
    _mirror(patch, body, status, view, _generation(body), now)


async def delete(body: Mapping[str, Any], client: JobClient, *, logger: Logger = log) -> None:
    """Cancel the job unless it is final; with ``deletePolicy: Delete`` delete it with its results.

    A job whose id was never recorded (its submission's answer was lost) is found by its reference.
    If the gateway refuses to delete the results, the job is still cancelled and the refusal raised
    (Kopf logs it and posts it as a warning event): the results stay."""
    status = _status(body)
    case_id = submitted_case(body)
    try:
        job_id, phase = status.get("jobId"), status.get("phase")
        if not job_id:
            reference = job_reference(body)
            found = [job for job in await client.list_jobs(case_id) if job.reference == reference]
            if not found:
                return
            job_id, phase = found[0].id, found[0].phase
        if _spec(body).get("deletePolicy", "Keep") == "Delete":
            try:
                await client.delete(case_id, str(job_id), results="delete")
            except GatewayError as exc:
                if exc.retryable or exc.status == HTTPStatus.NOT_FOUND:
                    raise
                await _cancel(client, case_id, str(job_id), phase, logger)
                raise kopf.PermanentError(f"the job's results are kept: {exc}") from exc
            logger.info("job %s deleted with its results", job_id)
        else:
            await _cancel(client, case_id, str(job_id), phase, logger)
    except GatewayError as exc:
        if exc.status == HTTPStatus.NOT_FOUND:
            return  # gone already (or its case is)
        raise kopf_error(exc) from exc


async def _cancel(client: JobClient, case_id: str, job_id: str, phase: object, logger: Logger) -> None:
    """Cancel a job that is not final (a 409: it ended meanwhile)."""
    if phase in FINAL_PHASES:
        return
    try:
        await client.cancel(case_id, job_id)
    except GatewayError as exc:
        if exc.status != HTTPStatus.CONFLICT:
            raise
        return
    logger.info("job %s cancelled; its results are kept", job_id)


def polling(status: Mapping[str, Any], **_: Any) -> bool:
    """Whether the timer should poll: a job was submitted and its phase is not final."""
    return bool(status.get("jobId")) and status.get("phase") not in FINAL_PHASES


# --- the job request and the body -----------------------------------------------------------------

_SNAPSHOT = IMMUTABLE_FIELDS + SUBMISSION_ONLY_FIELDS


def job_reference(body: Mapping[str, Any]) -> str:
    """The idempotency reference of a resource: ``{namespace}/{name}/{uid}``."""
    meta = body.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}/{meta.get('uid')}"


def approval_granted(body: Mapping[str, Any]) -> bool:
    """Approved by the annotation ``aima.io/approved: "true"`` or by ``spec.approval.approved``."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    if str(annotations.get(APPROVAL_ANNOTATION, "")).strip().lower() == "true":
        return True
    return bool((_spec(body).get("approval") or {}).get("approved"))


def job_request(body: Mapping[str, Any]) -> JobRequest:
    """The gateway's job request for a resource (raises pydantic's `ValidationError` if it cannot be one)."""
    spec = _spec(body)
    media = spec.get("media") or {}
    approval = spec.get("approval") or {}
    return JobRequest.model_validate(
        {
            "media_ids": list(media.get("ids") or []),
            "sources": list(media.get("sources") or []),
            "steps": list(spec["steps"]) if spec.get("steps") else None,
            "priority": spec.get("priority", "normal"),
            "context": spec.get("context"),
            "language": spec.get("language"),
            "require_approval": approval.get("required"),
            "approved": approval_granted(body),
            "hold_until": spec.get("holdUntil"),
            "reference": job_reference(body),
        }
    )


def submitted_case(body: Mapping[str, Any]) -> str:
    """The job's case: as submitted (a changed ``spec.caseId`` is refused, never followed)."""
    submitted = _status(body).get("submitted") or {}
    return str(submitted.get("caseId") or _spec(body)["caseId"])


def _spec(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("spec") or {}


def _status(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("status") or {}


def _generation(body: Mapping[str, Any]) -> int | None:
    generation = (body.get("metadata") or {}).get("generation")
    return int(generation) if generation is not None else None


# --- status ---------------------------------------------------------------------------------------


def observed_status(
    view: JobView, conditions: Sequence[Mapping[str, Any]], generation: int | None, now: Clock
) -> dict[str, Any]:
    """The status fields of `POLLED_FIELDS` that show ``view`` (absent ones are left out)."""
    final = view.phase in FINAL_PHASES
    status: dict[str, Any] = {
        "jobId": view.id,
        "phase": view.phase.value,
        "progress": round(view.progress, 4),
        "progressText": f"{math.floor(view.progress * 100 + 1e-9)}%",
        "etaSeconds": None if final or view.eta_s is None else max(0, round(view.eta_s)),
        "files": view.files,
        "steps": {
            step: {state: int(counts.get(state, 0)) for state in STEP_STATES}
            for step, counts in view.counts.items()
        },
        "estimate": cost_status(view.estimate),
        "actual": cost_status(view.actual),
        "report": {"reportId": view.report.report_id, "version": view.report.version}
        if view.report
        else None,
        "conditions": phase_conditions(view, conditions, generation, now),
    }
    return {key: value for key, value in status.items() if value is not None}


def cost_status(cost: Cost | None) -> dict[str, Any] | None:
    if cost is None:
        return None
    fields = {
        "modelSeconds": cost.model_s,
        "wallSeconds": cost.wall_s,
        "cost": cost.cost,
        "currency": cost.currency,
        "gpuProfile": cost.gpu_profile,
        "costText": cost_text(cost),
    }
    return {key: value for key, value in fields.items() if value is not None}


def cost_text(cost: Cost | None) -> str | None:
    """The printable cost, e.g. ``"12.40 EUR"``."""
    if cost is None or cost.cost is None:
        return None
    return f"{cost.cost:.2f} {cost.currency}" if cost.currency else f"{cost.cost:.2f}"


def phase_conditions(
    view: JobView, conditions: Sequence[Mapping[str, Any]], generation: int | None, now: Clock
) -> list[Condition]:
    """``conditions`` with ``Ready``, ``Succeeded``, ``Failed``, ``AwaitingApproval`` and ``Approved``
    as the job's phase and approval say."""
    phase = view.phase.value
    result = [dict(condition) for condition in conditions]

    def put(kind: str, status: str, reason: str, message: str) -> None:
        nonlocal result
        result = set_condition(result, kind, status, reason, message, generation, now)

    report = f"report {view.report.report_id} version {view.report.version}" if view.report else "no report"
    if phase in SUCCESSFUL_PHASES:
        done = (
            "some files or steps failed, see status.steps; " if phase == JobPhase.PARTIALLY_SUCCEEDED else ""
        )
        put("Ready", "True", phase, f"the results are ready: {done}{report}")
        put("Succeeded", "True", phase, f"{done}{report}")
    else:
        put("Ready", "False", phase, f"the job is {phase}")
        put("Succeeded", "False" if phase in FINAL_PHASES else "Unknown", phase, f"the job is {phase}")
    if phase == JobPhase.FAILED:
        put("Failed", "True", "Failed", _message(view.reason or "the job failed"))
    else:
        put("Failed", "False", phase, f"the job is {phase}")
    if phase == JobPhase.AWAITING_APPROVAL:
        cost = cost_text(view.estimate) or "an unknown cost"
        message = (
            f"the estimated cost of {cost} awaits approval: annotate {APPROVAL_ANNOTATION}=true "
            "or set spec.approval.approved"
        )
        put("AwaitingApproval", "True", "CostEstimated", message)
    elif _find(result, "AwaitingApproval") is not None:
        put("AwaitingApproval", "False", phase, f"the job is {phase}")
    if view.approval.approved_at:
        put(
            "Approved",
            "True",
            "Approved",
            f"approved by {view.approval.approved_by} at {view.approval.approved_at}",
        )
    return result


def spec_conditions(
    body: Mapping[str, Any], conditions: Sequence[Mapping[str, Any]], generation: int | None, now: Clock
) -> list[Condition]:
    """``conditions`` with ``ImmutableFieldChanged`` and ``ChangeNotApplied`` as the spec compares with
    the submitted one (added only once a field differs). `update` sets them at once, each poll again
    (so a concurrent status patch cannot lose them)."""
    result = [dict(condition) for condition in conditions]
    submitted = _status(body).get("submitted")
    if not isinstance(submitted, Mapping):
        return result
    spec = _spec(body)
    checks = (
        (
            "ImmutableFieldChanged",
            IMMUTABLE_FIELDS,
            "Refused",
            "{} cannot change once the job is submitted; the job goes on as submitted "
            "(restore the field or create another AnalysisJob)",
        ),
        (
            "ChangeNotApplied",
            SUBMISSION_ONLY_FIELDS,
            "SubmissionOnly",
            "{}: read at submission only, so the change is not applied (the job keeps the submitted values)",
        ),
    )
    for kind, fields, reason, text in checks:
        changed = [field for field in fields if spec.get(field) != submitted.get(field)]
        if changed:
            result = set_condition(
                result, kind, "True", reason, text.format(", ".join(changed)), generation, now
            )
        elif _find(result, kind) is not None:
            message = "the spec is as submitted"
            result = set_condition(result, kind, "False", "AsSubmitted", message, generation, now)
    return result


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: Clock,
) -> list[Condition]:
    """``conditions`` with the one of type ``kind`` set; its ``lastTransitionTime`` moves only when its
    status does, and an unchanged condition stays as it was."""
    wanted: Condition = {"type": kind, "status": status, "reason": reason, "message": message}
    if generation is not None:
        wanted["observedGeneration"] = generation
    result: list[Condition] = []
    found = False
    for condition in conditions:
        if condition.get("type") != kind:
            result.append(dict(condition))
            continue
        found = True
        if all(condition.get(key) == value for key, value in wanted.items()):
            result.append(dict(condition))
        else:
            same = condition.get("status") == status and condition.get("lastTransitionTime")
            result.append(
                {**wanted, "lastTransitionTime": condition["lastTransitionTime"] if same else _stamp(now)}
            )
    if not found:
        result.append({**wanted, "lastTransitionTime": _stamp(now)})
    return result


def merge_diff(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``current`` into ``desired``: empty if they agree."""
    diff: dict[str, Any] = {key: None for key in current if key not in desired}
    for key, value in desired.items():
        old = current.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            inner = merge_diff(old, value)
            if inner:
                diff[key] = inner
        elif key not in current or old != value:
            diff[key] = value
    return diff


def _mirror(
    patch: kopf.Patch,
    body: Mapping[str, Any],
    status: Mapping[str, Any],
    view: JobView,
    generation: int | None,
    now: Clock,
    *,
    baseline: Mapping[str, Any] | None = None,
) -> None:
    """Patch the polled fields that differ from ``baseline`` (the body's status) to show ``view``."""
    conditions = spec_conditions(body, status.get("conditions") or [], generation, now)
    desired = observed_status(view, conditions, generation, now)
    base = status if baseline is None else baseline
    current = {key: base[key] for key in POLLED_FIELDS if key in base}
    for key, value in merge_diff(current, desired).items():
        patch.status[key] = value


async def _approve_if_awaiting(
    body: Mapping[str, Any], view: JobView, client: JobClient, logger: Logger
) -> JobView:
    """Approve a job that awaits approval when the resource gives it (a 409: it moved on meanwhile)."""
    if view.phase != JobPhase.AWAITING_APPROVAL or view.approval.approved_at or not approval_granted(body):
        return view
    try:
        approved = await client.approve(view.case_id, view.id)
    except GatewayError as exc:
        if exc.status != HTTPStatus.CONFLICT:
            raise kopf_error(exc) from exc
        try:
            return await client.get(view.case_id, view.id)
        except GatewayError as again:
            raise kopf_error(again) from again
    logger.info("job %s approved (estimated cost %s)", view.id, cost_text(view.estimate))
    return approved


def _refused(
    patch: kopf.Patch,
    conditions: list[Condition],
    reason: str,
    message: str,
    generation: int | None,
    now: Clock,
) -> None:
    conditions = set_condition(conditions, "Submitted", "False", reason, message, generation, now)
    conditions = set_condition(conditions, "Failed", "True", reason, message, generation, now)
    patch.status["phase"] = JobPhase.FAILED.value
    patch.status["conditions"] = conditions


def _find(conditions: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any] | None:
    return next((condition for condition in conditions if condition.get("type") == kind), None)


def _is_true(conditions: Sequence[Mapping[str, Any]], kind: str) -> bool:
    condition = _find(conditions, kind)
    return condition is not None and condition.get("status") == "True"


def _stamp(now: Clock) -> str:
    return now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _message(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _reason(error: GatewayError) -> str:
    """A condition reason (CamelCase) for a refusal: the HTTP status phrase, e.g. ``UnprocessableEntity``."""
    try:
        phrase = HTTPStatus(error.status or 0).phrase
    except ValueError:
        return "Refused"
    return "".join(word.capitalize() for word in re.findall(r"[A-Za-z0-9]+", phrase))


# --- errors ---------------------------------------------------------------------------------------


def kopf_error(error: GatewayError) -> kopf.PermanentError | kopf.TemporaryError:
    """A 4xx that asking again cannot fix is permanent; the rest is retried after ``Retry-After``."""
    if error.retryable:
        return kopf.TemporaryError(str(error), delay=error.retry_after or RETRY_DELAY)
    return kopf.PermanentError(str(error))

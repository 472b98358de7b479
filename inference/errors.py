"""The three ways a model call fails, and what the function runtime does with each.

========================  ==========================================  =========================
exception                 meaning                                     the step
========================  ==========================================  =========================
`ModelNotConfigured`      no backend for the task, unknown backend,   records ``not_run`` with
                          endpoint refused our credentials or model   the reason; no retry
`ModelUnavailable`        transient: endpoint down or overloaded,     retries with backoff
                          timeout, weights failing to load            (the bus redelivers)
`InvalidModelOutput`      the model answered, but not usably for      records this item
                          this item (malformed, schema-violating,     ``failed`` with the reason
                          a citation of unknown evidence)             and goes on
========================  ==========================================  =========================

Nothing invents output: a step never fills in what a model did not return.
"""

from __future__ import annotations

from enum import StrEnum

from aima.storage import outages


class Outcome(StrEnum):
    """What the runtime records for a failed model call."""

    NOT_RUN = "not_run"
    RETRY = "retry"
    ITEM_FAILED = "item_failed"


class ModelError(RuntimeError):
    """Base of the model failures; ``outcome`` tells the runtime what to do."""

    outcome: Outcome = Outcome.RETRY

    def __init__(self, reason: str, *, task: str = "", backend: str = "") -> None:
        self.reason = reason
        self.task = task
        self.backend = backend
        super().__init__(reason)


class ModelNotConfigured(ModelError):
    """The task has no usable model here; the step records ``not_run`` with this reason."""

    outcome = Outcome.NOT_RUN


class ModelUnavailable(ModelError):
    """The model is configured but cannot answer now; retry later with backoff (at least
    ``retry_after`` seconds when the endpoint said so)."""

    outcome = Outcome.RETRY

    def __init__(
        self, reason: str, *, task: str = "", backend: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(reason, task=task, backend=backend)
        self.retry_after = retry_after


class InvalidModelOutput(ModelError):
    """The model's answer for this item is unusable; the item is recorded failed."""

    outcome = Outcome.ITEM_FAILED


outages.register("model", ModelUnavailable)  # a model that is down is an outage: 503, Retry-After


def outcome_of(exc: BaseException) -> Outcome | None:
    """The runtime's outcome for a model failure, or None for any other exception."""
    return exc.outcome if isinstance(exc, ModelError) else None

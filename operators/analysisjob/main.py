"""The operator process: ``kopf run -m operators.analysisjob.main --standalone --all-namespaces``.

Registers the handlers of `operators.analysisjob.handlers` for ``analysisjobs.aima.io/v1alpha1`` and
configures Kopf so that `PERMISSIONS` is all it needs: standalone (no peering resources), no
scanning of CRDs or namespaces, its progress and last handled spec in annotations, only warnings
and errors posted as events. The gateway client is built once at start-up and kept in ``memo``.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from aima.settings import SettingsError
from operators.analysisjob import handlers
from operators.analysisjob.client import JobClient
from operators.analysisjob.resource import (
    APPROVAL_ANNOTATION,
    FINALIZER,
    GROUP,
    PERMISSIONS,
    PLURAL,
    STORAGE_PREFIX,
    VERSION,
)

__all__ = ["PERMISSIONS", "POLL_SECONDS", "configure"]

POLL_SECONDS = 5.0


def configure(settings: kopf.OperatorSettings) -> None:
    """Kopf's settings for this operator (see the module docstring)."""
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per poll
    try:
        memo["client"] = JobClient.from_env()
    except SettingsError as exc:
        raise kopf.PermanentError(str(exc)) from None


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    client = memo.get("client")
    if isinstance(client, JobClient):
        await client.aclose()


def _client(memo: kopf.Memo) -> JobClient:
    return cast(JobClient, memo["client"])


@kopf.on.create(group=GROUP, version=VERSION, plural=PLURAL, id="submit")
async def submit(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    await handlers.create(body, patch, _client(memo), logger=logger)


@kopf.on.update(group=GROUP, version=VERSION, plural=PLURAL, id="immutable")
async def immutable(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    await handlers.update(body, patch, logger=logger)


@kopf.on.field(
    group=GROUP,
    version=VERSION,
    plural=PLURAL,
    id="approve-by-annotation",
    field=("metadata", "annotations", APPROVAL_ANNOTATION),
)
@kopf.on.field(
    group=GROUP, version=VERSION, plural=PLURAL, id="approve-by-spec", field="spec.approval.approved"
)
async def approve(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    await handlers.approve(body, patch, _client(memo), logger=logger)


@kopf.timer(
    group=GROUP,
    version=VERSION,
    plural=PLURAL,
    id="poll",
    interval=POLL_SECONDS,
    initial_delay=POLL_SECONDS,
    when=handlers.polling,
)
async def poll(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    await handlers.poll(body, patch, _client(memo), logger=logger)


@kopf.on.delete(group=GROUP, version=VERSION, plural=PLURAL, id="cancel")
async def cancel(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    await handlers.delete(body, _client(memo), logger=logger)

"""``aima retention sweep``: request the retention sweep, as a schedule does.

The request is an ``io.aima.retention.sweep.requested.v1`` event written to the outbox, so it is
signed and published by the next relay that sweeps the outbox (every running function has one),
and the retention function handles it like any other event. The chart runs this command from a
CronJob: a Knative PingSource cannot sign its events, and functions accept signed events only.
"""

from __future__ import annotations

import click

from aima.settings import load_settings
from aima.storage.audit import SYSTEM_CHAIN
from aima.storage.outbox import Outbox
from events.catalogue import RetentionSweepRequested, make_event

SOURCE = "/aima/cli/retention"


@click.group()
def retention() -> None:
    """Retention of intermediate artefacts (frames, audio extracts)."""


@retention.command("sweep")
def sweep() -> None:
    """Request a sweep now; prints the event id."""
    from aima.cli.context import Kernel

    k = Kernel(load_settings(), None)
    try:
        event = make_event(RetentionSweepRequested(), source=SOURCE)
        Outbox(k.stores.db).write([event])
        k.record_in(SYSTEM_CHAIN, "retention.requested", object=f"event/{event.id}")
    finally:
        k.close()
    click.echo(event.id)

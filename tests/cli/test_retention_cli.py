"""``aima retention sweep`` (what the chart's CronJob runs): a signed-on-publish sweep request in the
outbox, and a record in the system audit chain."""

from __future__ import annotations

from pathlib import Path

from aima.settings import load_settings
from aima.storage.factory import Stores
from aima.storage.outbox import Outbox
from events.catalogue import RetentionSweepRequested
from tests.support import run_aima


def test_a_requested_sweep_waits_in_the_outbox_for_a_relay_and_is_audited(tmp_path: Path) -> None:
    data = tmp_path / "aima"
    env = {"AIMA_DATA_DIR": str(data)}
    done = run_aima("retention", "sweep", env=env)
    assert done.returncode == 0, done.stderr
    event_id = done.stdout.strip()
    stores = Stores.open(load_settings(profile="embedded", data_dir=data))
    try:
        [pending] = Outbox(stores.db).pending()
    finally:
        stores.close()
    assert pending.event.id == event_id
    assert pending.event.type == RetentionSweepRequested.TYPE
    audit = run_aima("audit", "export", "--chain", "system", env=env)
    assert f'"object": "event/{event_id}"' in audit.stdout
    assert '"action": "retention.requested"' in audit.stdout

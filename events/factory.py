"""Choose the event-bus adapter from `Settings` (``AIMA_BUS``: memory, nats, or http to a Knative sink)."""

from __future__ import annotations

from aima.settings import Settings
from events.bus import EventBus, RetryPolicy
from events.bus_memory import MemoryBus


def retry_policy_from_settings(settings: Settings) -> RetryPolicy:
    """The default `RetryPolicy` for subscriptions, from ``AIMA_BUS_*``."""
    return RetryPolicy(
        max_deliver=settings.bus_max_deliver,
        backoff=tuple(settings.bus_backoff),
        ack_wait=settings.bus_ack_wait,
    )


def bus_from_settings(settings: Settings) -> EventBus:
    """A not yet started bus: in-process for ``memory``, JetStream for ``nats``, a sink for ``http``."""
    if settings.bus == "http":
        from events.bus_http import HttpBus

        assert settings.sink_url is not None  # the settings refuse http without a sink
        return HttpBus(settings.sink_url)
    if settings.bus == "nats":
        from events.bus_nats import NatsBus  # nats is only needed in the cluster profile

        return NatsBus(
            settings.nats_url,
            stream=settings.nats_stream,
            dedupe_window=settings.bus_dedupe_window,
            name=settings.service_name,
            subject_root=settings.nats_subject_root,
        )
    return MemoryBus(dedupe_window=settings.bus_dedupe_window)

"""`Host`: runs functions in this process from their specs, as ``aima serve`` and ``aima analyze`` do.

For each spec it builds the core (`Dispatcher`), the HTTP app (the spec's own ``app``, or the
CloudEvents adapter), and the readiness registry from the spec's ``needs``. Delivery comes from
``AIMA_DELIVERY``, one path per process: ``bus`` subscribes a durable consumer per event function
(``POST /`` is not served), ``http`` serves ``POST /`` for a Knative Trigger and subscribes nothing.

Every host also starts the outbox relay (so what this process commits is published) and a
broadcast subscription to ``io.aima.config.changed.v1`` that invalidates this process's
configuration cache, so a changed setting applies everywhere at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI

from aima.telemetry.health import HealthRegistry
from events.bus import Subscription
from events.catalogue import ConfigChanged
from events.envelope import CloudEvent
from functions.runtime.app import create_function_app
from functions.runtime.deps import Deps
from functions.runtime.dispatch import Dispatcher
from functions.runtime.spec import FunctionSpec
from functions.runtime.steps import StepGate
from functions.runtime.worker import instrument

log = logging.getLogger(__name__)


class CannotServe(RuntimeError):
    """The functions cannot run as asked; the message is one line saying what to do instead."""


@dataclass
class Host:
    """Functions of one process (see module docstring)."""

    deps: Deps
    specs: Sequence[FunctionSpec]
    _dispatchers: dict[str, Dispatcher] = field(default_factory=dict, init=False)
    _started: bool = field(default=False, init=False)

    @property
    def delivery(self) -> str:
        return self.deps.settings.delivery

    def dispatcher(self, spec: FunctionSpec) -> Dispatcher:
        """The dispatcher of an event function (its core built on first use)."""
        if spec.build is None:
            raise CannotServe(f"{spec.name} is not an event function")
        found = self._dispatchers.get(spec.name)
        if found is None:
            settings = self.deps.settings
            timeout = settings.step_timeouts.get(spec.name, float(spec.resources.timeout_s))
            gate = None
            if spec.step is not None:
                gate = StepGate(self.deps.db, spec.name, spec.step, lease_s=timeout + settings.bus_ack_wait)
            found = Dispatcher(
                spec,
                spec.build(self.deps),
                outbox=self.deps.outbox,
                relay=self.deps.relay,
                gate=gate,
                timeout_s=timeout,
            )
            self._dispatchers[spec.name] = found
        return found

    def health(self, spec: FunctionSpec) -> HealthRegistry:
        """Readiness of ``spec``: the stores, bus and models it names in ``needs``."""
        return readiness(self.deps, spec.needs)

    def app(self, spec: FunctionSpec) -> FastAPI:
        """The HTTP app of ``spec``: its own API, or the CloudEvents endpoint with probes."""
        found = self.deps.local_apps.get(spec.name)
        if found is not None:
            return found
        if spec.app is not None:
            found = spec.app(self.deps)
        else:
            found = create_function_app(
                self.dispatcher(spec),
                signer=self.deps.signer,
                audit=self.deps.audit,
                health=self.health(spec),
                receive_events=self.delivery == "http",
            )
        self.deps.local_apps[spec.name] = found
        return found

    async def start(self) -> None:
        """Start the bus, the relay, the configuration notices and (delivery ``bus``) the consumers."""
        if self._started:
            return
        self._started = True
        bus = self.deps.bus
        await bus.start()
        await self.deps.relay.start()
        notices = f"notices-{uuid.uuid4().hex[:12]}"
        await bus.broadcast(Subscription(notices, (ConfigChanged.TYPE,), self._config_changed))
        if self.delivery != "bus":
            return
        policy = self.deps.retry_policy
        for spec in self.specs:
            if not spec.consumes:
                continue
            dispatcher = self.dispatcher(spec)
            handler = instrument(
                spec.name, dispatcher, max_deliver=policy.max_deliver, on_dead=dispatcher.give_up
            )
            await bus.subscribe(Subscription(spec.name, spec.types, handler, policy))
            log.info("consumer started", extra={"consumer": spec.name, "types": list(spec.types)})

    async def stop(self) -> None:
        """Stop the relay and the bus, then release the stores."""
        if self._started:
            await self.deps.relay.stop()
            await self.deps.bus.close()
        self._started = False
        await asyncio.to_thread(self.deps.close)

    async def _config_changed(self, event: CloudEvent) -> list[CloudEvent]:
        await asyncio.to_thread(self.deps.config.invalidate)
        log.info("configuration changed; cache invalidated", extra={"event_id": event.id})
        return []


def readiness(deps: Deps, needs: Sequence[str]) -> HealthRegistry:
    """A readiness registry of ``needs``: store names, ``bus`` and ``model:<task>``."""
    registry = HealthRegistry(timeout=deps.settings.health_timeout)
    stores = deps.stores.health_checks()
    for need in needs:
        if need == "bus":
            registry.add("bus", deps.bus.health)
        elif need in stores:
            registry.add(need, stores[need])
        elif need.startswith("model:"):
            # only a configured model can be down; without one the step records ``not_run``
            for name, check in deps.models.readiness_checks([need.removeprefix("model:")]).items():
                registry.add(name, check)
    return registry

"""What a function's core is told about the event it handles, besides the event's data."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from events.envelope import CloudEvent


@dataclass(frozen=True)
class Context:
    """The handled event's envelope and the function handling it.

    A core reads ids from its typed data; the envelope is here for what only it carries (its id, to
    derive ids of its own, its time, for a reference moment that a redelivery keeps).
    """

    function: str
    event: CloudEvent
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("aima.functions"))

    @property
    def event_id(self) -> str:
        return self.event.id

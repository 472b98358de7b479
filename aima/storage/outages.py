"""Which exceptions mean "a store or the bus cannot be reached right now" (an outage), as opposed to a bug.

An outage is answered ``503 Service Unavailable`` with ``Retry-After`` (the request may simply be
sent again once the component is back), a bug ``500``. The HTTP entry points (the gateway's
middleware, the ingest app, the function runtime's CloudEvent endpoint) ask `outage_of` about any
exception no route answered; see ``functions.runtime.problems.outage_problem``.

Each adapter registers its own driver's connection failures when it is imported, so this module
names no driver and the import contracts hold (``register("database", OperationalError, ...)`` in
``aima.storage.relational``; the object store, the document store, the cache and the event bus do
the same). Registered today:

* database (SQLAlchemy): ``OperationalError`` (connection refused or lost, server shutting down,
  SQLite busy past its timeout), ``InterfaceError`` (a closed connection), ``DisconnectionError``;
* object store (botocore): its ``ConnectionError`` family (endpoint unreachable, connect timeout),
  ``ConnectionClosedError``, ``ReadTimeoutError``;
* document store (pymongo): ``ConnectionFailure`` (which covers ``AutoReconnect``, network timeouts)
  and ``ServerSelectionTimeoutError``;
* cache (redis-py): ``ConnectionError``, ``TimeoutError``;
* event bus: ``events.bus.BusError``.

`outage_of` looks at the exception and, transitively, at what caused it (``__cause__``,
``__context__``) and the members of exception groups: adapters wrap driver errors (``CacheError``
from a redis ``ConnectionError``), and a failure while handling an outage (an audit record that
could not be written after the database went away) is part of the same outage.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

RETRY_AFTER_S = 5
"""What ``Retry-After`` says during an outage: long enough for a restart or fail-over to show, short
enough that a client retrying in a loop notices the recovery soon."""
_MAX_LINKS = 64
"""How many linked exceptions are examined at most (chains can be long, or cyclic)."""

Predicate = Callable[[BaseException], bool]
_registry: dict[type[BaseException], tuple[str, Predicate | None]] = {}
_lock = threading.Lock()


def register(component: str, *types: type[BaseException], when: Predicate | None = None) -> None:
    """Declare ``types`` (and their subclasses) as ``component`` being unreachable ("database",
    "object store", ...); with ``when``, only those of their instances it accepts (a driver whose
    error class mixes connection failures with mistakes). Registering a type again replaces it."""
    if not component:
        raise ValueError("component must not be empty")
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, BaseException)):
            raise TypeError(f"{kind!r} is not an exception type")
    with _lock:
        for kind in types:
            _registry[kind] = (component, when)


def registered() -> dict[type[BaseException], str]:
    """The registry: exception type -> component."""
    with _lock:
        return {kind: component for kind, (component, _) in _registry.items()}


def outage_of(exc: BaseException) -> str | None:
    """The component whose outage ``exc`` is or was caused by, or None (see module docstring)."""
    with _lock:
        known = tuple(_registry.items())
    if not known:
        return None
    for linked in _linked(exc):
        for kind, (component, when) in known:
            if isinstance(linked, kind) and (when is None or when(linked)):
                return component
    return None


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, a store or the bus being unreachable."""
    return outage_of(exc) is not None


def _linked(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it links to, breadth first, each once, at most `_MAX_LINKS`."""
    queue: list[BaseException] = [exc]
    seen: set[int] = set()
    while queue and len(seen) < _MAX_LINKS:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            queue.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                queue.append(linked)

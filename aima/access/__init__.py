"""Access control: the authorisation policy (`policy`) and the data scope a request runs in (`scope`).

Pure code without I/O. The data layer enforces a `Scope` (``aima.storage.scoped``); the API layer
maps its principal to a `Subject` and asks `decide` before every action.
"""

from aima.access.policy import ACTION_KIND, Action, Decision, Resource, Subject, decide, shareable_role
from aima.access.scope import Scope

__all__ = ["ACTION_KIND", "Action", "Decision", "Resource", "Scope", "Subject", "decide", "shareable_role"]

"""Runtime configuration: the settings admins change without a redeploy, versioned per tenant.

`schema` defines the sections and their bounds; `service.ConfigService` stores versions, merges
defaults, global and tenant values, and caches the result. Connection settings and secrets are
process settings (`aima.settings`), never here.
"""

from aima.config.schema import SECTIONS, RuntimeConfig

__all__ = ["SECTIONS", "RuntimeConfig"]

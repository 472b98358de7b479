"""AIMA kernel: settings, domain model, access policy, audit, storage ports and adapters, telemetry, CLI."""

__version__ = "0.1.0"

"""Tracing, JSON logs, Prometheus metrics and health checks."""

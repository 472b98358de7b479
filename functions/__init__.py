"""Knative functions: one subpackage per pipeline step, each a plain core plus a thin adapter."""

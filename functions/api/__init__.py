"""The public gateway: every user-facing route, behind authentication, case-scoped authorisation and audit."""

"""Kubernetes operators: `operators.analysisjob`, the Kopf operator for AnalysisJob resources."""

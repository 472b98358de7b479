"""The Kopf operator for AnalysisJob custom resources (filled by the jobs issue)."""

"""Storage ports (interfaces) and their adapters, chosen by settings."""

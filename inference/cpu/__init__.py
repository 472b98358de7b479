"""CPU backends: models that run in the function's own process, from packages (nothing is downloaded)."""

"""Case reports: the model, its renderings and the chain of custody."""

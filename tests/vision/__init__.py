"""The vision step: the vision describer and the vision function against a protocol-checking server."""

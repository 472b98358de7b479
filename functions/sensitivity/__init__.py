"""The sensitivity function: every frame and image scored for explicit material (Open-NSFW), so that
the gateway serves images at or above the tenant's threshold blurred until a reviewer opens them
(`functions.sensitivity.core`, `aima.storage.sensitivity`)."""

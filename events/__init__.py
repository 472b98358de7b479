"""The CloudEvent catalogue and the event-bus adapters (NATS JetStream, in-process)."""

"""The vision function: sampled frames described by a vision-language model, restraint indicators and
visible distress cues flagged for human review (`functions.vision.core`)."""

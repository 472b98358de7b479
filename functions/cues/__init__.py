"""The cues function: transcripts made searchable by meaning, and spoken distress and coercion cues
flagged for human review (`functions.cues.core`, the list in `functions.cues.cuelist`)."""

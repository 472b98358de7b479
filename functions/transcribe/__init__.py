"""The transcribe function: speech regions, then text with a language per segment, chunk by chunk."""

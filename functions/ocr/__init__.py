"""The ocr function: lines of text in frames and images, deduplicated across consecutive frames,
stored per file and made searchable with the case's speech (`functions.ocr.core`)."""

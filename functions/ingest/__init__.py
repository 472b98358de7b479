"""The ingest function: uploads into a case, typed from content, streamed, de-duplicated (see ``core``)."""

"""The speakers function: who speaks when in a file, and which of the case's voices that is."""

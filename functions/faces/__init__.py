"""The faces function: faces found, aligned, embedded and followed across frames as tracks."""

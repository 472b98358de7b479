"""The probe function: metadata, frames, thumbnails and audio of uploaded media (see ``core``)."""

"""The retention function: purges expired intermediate artefacts on a schedule (see ``core``)."""

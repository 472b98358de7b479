"""The pose function: body landmarks on a crop around each person a face result found, read for
posture cues (wrists together, hands behind the back, arms raised, lying down) and corroborated with
the vision step's restraint indicators (`functions.pose.core`)."""

"""The clinic hub: signaling, waiting room, clinician console, staff alerts."""

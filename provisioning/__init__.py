"""The booth's life outside a visit: set-up, identity, self-test and updates."""

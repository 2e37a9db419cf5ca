"""The booth's one exception tree.

::

    KioskError                 anything the booth raises on purpose
    ├── ConfigError            the booth configuration is invalid (lists every problem)
    ├── HardwareError          a device could not be opened or driven
    └── ProtocolError          a message from outside did not follow its schema

Errors from libraries (gpiozero, pyudev, tomllib, systemd) are caught at the
module that calls them and re-raised as one of these, with a message that
names what was wrong, where (key path, device, pin) and how to fix it.
Residents never see these texts; they see translated messages chosen by key.
"""

from __future__ import annotations


class KioskError(Exception):
    """Base class of every error the booth raises on purpose."""


class ConfigError(KioskError):
    """The configuration has one or more problems, each naming its key path."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("\n".join(self.problems))


class HardwareError(KioskError):
    """A device could not be opened or driven; the message names the device."""


class ProtocolError(KioskError):
    """A message did not follow its schema; the message names the message type."""

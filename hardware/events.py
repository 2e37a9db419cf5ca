"""What the hardware reports, as plain immutable values.

They cross from hardware threads into the booth's event loop and are fed
to the visit state machine unchanged, so they carry no device handles and
nothing a resident typed or said.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class DeviceKind(StrEnum):
    """Kinds of hot-plugged device the booth cares about."""

    CAMERA = "camera"
    MICROPHONE = "microphone"
    SPEAKER = "speaker"
    HEADSET = "headset"
    STORAGE = "storage"


class WiringFault(StrEnum):
    """How a supervised contact loop has failed."""

    CUT = "cut"
    SHORT = "short"


@dataclass(frozen=True)
class DoorOpened:
    """The booth's privacy door opened (or its contact reads open)."""


@dataclass(frozen=True)
class DoorClosed:
    """The booth's privacy door closed."""


@dataclass(frozen=True)
class EmergencyHeld:
    """The emergency button has been held past its hold time."""


@dataclass(frozen=True)
class EmergencyReleased:
    """The emergency button was let go (the alarm stays until staff clear it)."""


@dataclass(frozen=True)
class HardwareFault:
    """A device stopped working: a supervised wire was cut or shorted, or similar.

    ``device`` is a role name (``door``, ``emergency_button``, ``camera``) and
    ``reason`` a short fixed word, so both can be logged as they are.
    """

    device: str
    reason: str


@dataclass(frozen=True)
class HardwareRestored:
    """A device reported in :class:`HardwareFault` works again."""

    device: str


@dataclass(frozen=True)
class DeviceAdded:
    """A device of interest was plugged in.

    ``card`` is a sound device's ALSA card number (``/sys/class/sound/cardN``),
    so the audio can be routed to a headset; it is an address, not a handle,
    and does not take part in equality: a headset is a headset.
    """

    kind: DeviceKind
    card: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class DeviceRemoved:
    """A device of interest was unplugged (``card``: as for :class:`DeviceAdded`)."""

    kind: DeviceKind
    card: int | None = field(default=None, compare=False)


HardwareEvent = (
    DoorOpened
    | DoorClosed
    | EmergencyHeld
    | EmergencyReleased
    | HardwareFault
    | HardwareRestored
    | DeviceAdded
    | DeviceRemoved
)

"""Notices a camera or microphone that is there but delivers nothing.

A wedged USB camera keeps its device node and gives the same picture (or
none) forever; a dead microphone, or a recorder that died, gives digital
silence. Neither unplugs, so udev says nothing. The watch looks at what the
open devices deliver and reports a :class:`HardwareFault` (``camera``:
``frozen`` or ``no_frames``; ``microphone``: ``silent``) once the symptom has
lasted long enough to rule out a hiccup, and :class:`HardwareRestored` when
the device delivers again.

Only exact digital silence counts: a working microphone in a quiet room
still hears its own noise, so its level is never exactly zero. A camera
looking at a still scene still changes in its noise, so only the very same
picture (the same object, or the same bytes) counts as frozen.

It is a pure object fed with a clock: the booth calls :meth:`check` every
half second on its loop while the devices are open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from hardware.camera import Frame
from hardware.events import HardwareFault, HardwareRestored

FROZEN_AFTER: Final = 3.0
"""Seconds of the same picture (or none) before a camera is reported."""
SILENT_AFTER: Final = 5.0
"""Seconds of digital silence before a microphone is reported."""


class _Symptom:
    """How long one device has shown its symptom, and whether it has been reported."""

    def __init__(self, device: str, after: float) -> None:
        self.device, self.after = device, after
        self.since: float | None = None
        self.reason = ""
        self.reported = False

    def update(self, now: float, reason: str | None) -> HardwareFault | HardwareRestored | None:
        if reason is None:
            self.since = None
            if self.reported:
                self.reported = False
                return HardwareRestored(self.device)
            return None
        if self.since is None or reason != self.reason:
            self.since, self.reason = now, reason
        if not self.reported and now - self.since >= self.after:
            self.reported = True
            return HardwareFault(self.device, reason)
        return None

    def forget(self) -> None:
        """The device was closed: its next opening starts with a clean slate."""
        self.since = None


class DeviceWatch:
    """Turns what the camera and microphone deliver into faults and recoveries."""

    enabled: bool = True
    """Only the tests' twin turns this off."""

    def __init__(
        self,
        camera: Callable[[], Frame | None] | None,
        level: Callable[[], float] | None,
        *,
        frozen_after: float = FROZEN_AFTER,
        silent_after: float = SILENT_AFTER,
    ) -> None:
        self._camera = camera
        self._level = level
        self._pictures = _Symptom("camera", frozen_after)
        self._sound = _Symptom("microphone", silent_after)
        self._last: Frame | None = None

    def check(
        self, now: float, *, camera_open: bool, microphone_open: bool
    ) -> list[HardwareFault | HardwareRestored]:
        """What changed since the last check; devices not open are not judged."""
        if not self.enabled:
            return []
        out: list[HardwareFault | HardwareRestored] = []
        if camera_open and self._camera is not None:
            frame = self._camera()
            if frame is None:
                reason: str | None = "no_frames"
            elif self._last is not None and (frame is self._last or frame.rgb == self._last.rgb):
                reason = "frozen"
            else:
                reason = None
            self._last = frame
            event = self._pictures.update(now, reason)
            if event is not None:
                out.append(event)
        else:
            self._pictures.forget()
            self._last = None
        if microphone_open and self._level is not None:
            event = self._sound.update(now, "silent" if self._level() == 0.0 else None)
            if event is not None:
                out.append(event)
        else:
            self._sound.forget()
        return out

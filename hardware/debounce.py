"""Debouncing, hold timing and wire supervision as pure, clock-free logic.

Nothing here reads a clock, starts a thread or touches a pin: every method
takes ``now`` (seconds on any monotonic scale) and returns what happened, and
``deadline()`` says when the caller must next call ``poll`` if nothing else
happens first. That is what lets the tests replay thousands of bouncing
sequences in virtual time, and lets :mod:`hardware.gpio` drive the same code
from gpiozero callbacks and ``loop.call_at`` timers.

Times passed in must not go backwards; an earlier ``now`` (an edge stamped on
another thread but delivered after a timer already ran) is treated as the
latest time seen, so the error is bounded by the delivery delay.
"""

from __future__ import annotations

import math

from hardware.events import (
    EmergencyHeld,
    EmergencyReleased,
    HardwareEvent,
    HardwareFault,
    HardwareRestored,
    WiringFault,
)

__all__ = ["Debouncer", "HoldDetector", "SupervisedContact"]


def _check_seconds(name: str, value: float) -> float:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)


class HoldDetector:
    """Turns a raw, bouncing button signal into one ``EmergencyHeld`` per real hold.

    Ground truth, in terms of the raw samples given to :meth:`update` (the raw
    signal keeps its last value between samples and starts released):

    * A *press* starts at a raw press edge ``s`` when no press is in progress.
    * A raw release at ``r`` during a press is bounce if the raw signal is
      pressed again at some ``p`` with ``p - r < debounce_s``; the press goes
      on as if the release never happened. Otherwise (the release lasts at
      least ``debounce_s``) the press *ends* at ``e = r + debounce_s``, and a
      raw press at ``p >= e`` starts a new press, which must again last
      ``hold_s``.
    * So the debounced signal is pressed on ``[s, e)``. ``EmergencyHeld`` is
      returned by the call whose ``now`` reaches ``s + hold_s``, if and only
      if ``e >= s + hold_s``; that is at most once per press. A caller that
      polls at :meth:`deadline` therefore sees it at exactly ``s + hold_s``.
    * ``EmergencyReleased`` is returned at ``e`` for a press that was held;
      never for one that was not.
    * Several things at one instant happen in this order: the hold completes,
      then the press ends, then a raw edge at that instant is applied.

    Presses themselves are not delayed: at ``hold_s`` >> ``debounce_s`` a
    short spike only starts a press that ends ``debounce_s`` after it.
    """

    def __init__(self, hold_s: float, debounce_s: float) -> None:
        self.hold_s = _check_seconds("hold_s", hold_s)
        self.debounce_s = _check_seconds("debounce_s", debounce_s)
        self._now = -math.inf
        self._raw = False
        self._start: float | None = None
        self._released_at: float | None = None
        self._held = False

    @property
    def pressed(self) -> bool:
        """Whether a (debounced) press is in progress."""
        return self._start is not None

    def deadline(self) -> float | None:
        """When :meth:`poll` must next be called, or None if only an edge can change anything."""
        due = min(self._hold_due(), self._end_due())
        return None if due == math.inf else due

    def update(self, pressed: bool, now: float) -> list[HardwareEvent]:
        """Take a raw reading (an edge, or a repeat of the current level) at ``now``."""
        now = max(now, self._now)
        events = self.poll(now)
        if pressed != self._raw:
            self._raw = pressed
            if not pressed:
                self._released_at = now
            elif self._start is None:
                self._start = now
                self._held = False
            else:
                self._released_at = None
            events += self.poll(now)
        return events

    def poll(self, now: float) -> list[HardwareEvent]:
        """Let time pass up to ``now`` and report what completed on the way."""
        now = max(now, self._now)
        self._now = now
        events: list[HardwareEvent] = []
        while True:
            hold, end = self._hold_due(), self._end_due()
            if hold <= now and hold <= end:
                self._held = True
                events.append(EmergencyHeld())
            elif end <= now:
                if self._held:
                    events.append(EmergencyReleased())
                self._start = self._released_at = None
                self._held = False
            else:
                return events

    def _hold_due(self) -> float:
        if self._start is None or self._held:
            return math.inf
        return self._start + self.hold_s

    def _end_due(self) -> float:
        if self._released_at is None:
            return math.inf
        return self._released_at + self.debounce_s


class Debouncer:
    """A two-level signal that must stay at a new level for ``debounce_s`` to count.

    A change at ``t`` is accepted at ``t + debounce_s`` if no change back
    happened before then (a change back at exactly ``t + debounce_s`` comes
    too late). Used for the door, where both edges matter equally.
    """

    def __init__(self, debounce_s: float, value: bool) -> None:
        self.debounce_s = _check_seconds("debounce_s", debounce_s)
        self.value = value
        self._now = -math.inf
        self._pending_since: float | None = None

    def deadline(self) -> float | None:
        """When :meth:`poll` must next be called, or None."""
        if self._pending_since is None:
            return None
        return self._pending_since + self.debounce_s

    def update(self, raw: bool, now: float) -> bool | None:
        """Take a raw reading; returns the new stable value if it changed, else None."""
        now = max(now, self._now)
        changed = self.poll(now)
        if raw == self.value:
            self._pending_since = None
        elif self._pending_since is None:
            self._pending_since = now
            changed = self.poll(now) if changed is None else changed
        return changed

    def poll(self, now: float) -> bool | None:
        """Let time pass; returns the new stable value if it changed, else None."""
        self._now = now = max(now, self._now)
        due = self.deadline()
        if due is None or due > now:
            return None
        self.value = not self.value
        self._pending_since = None
        return self.value


class SupervisedContact:
    """Watches a changeover switch read on two pins for a cut or shorted wire.

    The main contact and the supervision contact are complementary, so a
    healthy switch has exactly one of them closed. Both closed is a *short*,
    both open a *cut*. A condition is reported when it has lasted without
    interruption for at least ``fault_s`` (the moment a changeover spends
    between its contacts is not a fault), at ``since + fault_s``:

    * short or cut for ``fault_s`` -> ``HardwareFault(device, "short"|"cut")``,
      again if it turns into the other fault and that lasts ``fault_s``;
    * after a fault, healthy for ``fault_s`` -> ``HardwareRestored(device)``.
      The restore is held back like the fault so that a loose wire reads as
      one long fault, not as an alert every few seconds.

    Until the first :meth:`update` nothing is known and nothing is reported;
    a contact that is already faulty then is reported ``fault_s`` later.
    """

    def __init__(self, device: str, fault_s: float) -> None:
        self.device = device
        self.fault_s = _check_seconds("fault_s", fault_s)
        self._now = -math.inf
        self._condition: WiringFault | None = None
        self._known = False
        self._since = -math.inf
        self._reported: WiringFault | None = None

    @property
    def faulty(self) -> bool:
        """Whether a fault has been reported and not yet restored."""
        return self._reported is not None

    def deadline(self) -> float | None:
        """When :meth:`poll` must next be called, or None."""
        if not self._known or self._condition == self._reported:
            return None
        return self._since + self.fault_s

    def update(self, main_closed: bool, check_closed: bool, now: float) -> list[HardwareEvent]:
        """Take the current level of both contacts at ``now``."""
        now = max(now, self._now)
        events = self.poll(now)
        condition: WiringFault | None = None
        if main_closed and check_closed:
            condition = WiringFault.SHORT
        elif not main_closed and not check_closed:
            condition = WiringFault.CUT
        if not self._known or condition != self._condition:
            self._known = True
            self._condition = condition
            self._since = now
            events += self.poll(now)
        return events

    def poll(self, now: float) -> list[HardwareEvent]:
        """Let time pass up to ``now`` and report a condition that lasted ``fault_s``."""
        self._now = now = max(now, self._now)
        due = self.deadline()
        if due is None or due > now:
            return []
        self._reported = self._condition
        if self._condition is None:
            return [HardwareRestored(self.device)]
        return [HardwareFault(self.device, self._condition.value)]

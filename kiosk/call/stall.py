"""When a call's media has stopped, and when to try again: a pure clock-driven rule.

The booth cannot ask the network whether a call still works; it can only
notice that nothing has arrived. :class:`StallWatch` is told when media
arrives and asked, on every tick of the engine's monitor, what to do now.
A silence shorter than ``stall_after`` is a blip and changes nothing (a
resident should not see "connection lost" for a hiccup); a longer one is a
stall: tell the visit once, then re-offer every ``retry_every`` seconds until
media arrives again. No clock of its own, so tests step it by hand.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

STALL_AFTER: Final = 5.0
"""Seconds without inbound media before the call counts as stalled (docs/calls.md: within 5 s)."""
RETRY_EVERY: Final = 4.0
"""Seconds between re-offers while stalled: long enough for ICE to finish on a working path."""


class Verdict(StrEnum):
    LOST = "lost"  # newly stalled: tell the visit, re-offer
    RETRY = "retry"  # still stalled: re-offer again


class StallWatch:
    """Tracks the last inbound media of a live call and says when it has stopped."""

    def __init__(self, stall_after: float = STALL_AFTER, retry_every: float = RETRY_EVERY) -> None:
        self.stall_after = stall_after
        self.retry_every = retry_every
        self.watching = False
        self.stalled = False
        self.last_media: float | None = None
        self._quiet_since = 0.0
        self._next_retry = 0.0

    def expect(self, now: float) -> None:
        """A new offer went out: give it a full ``stall_after`` to bring media (unless stalled)."""
        if not self.watching:
            self.watching = True
            self._quiet_since = now
        elif not self.stalled:
            self._quiet_since = max(self._quiet_since, now)

    def media(self, now: float) -> bool:
        """Media arrived. True when this ends a stall (tell the visit it is back)."""
        self.last_media = now
        self._quiet_since = now
        if self.stalled:
            self.stalled = False
            return True
        return False

    def failed(self, now: float) -> bool:
        """The connection failed outright (ICE or DTLS): a stall now. True when newly stalled."""
        if not self.watching or self.stalled:
            return False
        self.stalled = True
        self._next_retry = now + self.retry_every
        return True

    def flowing(self, now: float, within: float = 1.5) -> bool:
        """Whether media is arriving right now (none for ``within`` seconds says no)."""
        return not self.stalled and self.last_media is not None and now - self.last_media <= within

    def tick(self, now: float) -> Verdict | None:
        """What to do at ``now``: nothing, tell the visit (LOST) or try again (RETRY)."""
        if not self.watching:
            return None
        if not self.stalled:
            if now - self._quiet_since >= self.stall_after:
                self.stalled = True
                self._next_retry = now + self.retry_every
                return Verdict.LOST
            return None
        if now >= self._next_retry:
            self._next_retry = now + self.retry_every
            return Verdict.RETRY
        return None

    def stop(self) -> None:
        """The call is over: forget everything."""
        self.watching = self.stalled = False
        self.last_media = None

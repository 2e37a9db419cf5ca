"""How much video a poor link can carry: a pure policy over the far side's loss reports.

The clinician's browser tells the booth, in RTCP receiver reports, what
fraction of its packets were lost and (through the timing fields) the round
trip. When loss stays high the booth sends smaller, slower video, and in the
end none, so that the voice (what a visit needs most) keeps getting through;
audio is never stepped down. When the link has been clean for a while, video
steps back up. Stepping down is quick and stepping up slow, so a link on the
edge does not make the picture flap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class VideoLevel:
    """One step of the video ladder: a fraction of the camera's size, and a frame rate."""

    name: str
    scale: float  # 0 means no picture: a tiny black frame a second keeps the track alive
    fps: int

    @property
    def off(self) -> bool:
        return self.scale == 0.0


LEVELS: Final = (
    VideoLevel("full", 1.0, 20),
    VideoLevel("reduced", 0.5, 12),
    VideoLevel("off", 0.0, 1),
)
"""Best first: e.g. 640x480 at 20 fps, 320x240 at 12 fps, then no picture."""

BAD_LOSS: Final = 0.08
"""A report losing this fraction of packets or more is bad ..."""
GOOD_LOSS: Final = 0.02
"""... and one losing this or less (with a sane round trip) is good; between is neither."""
BAD_RTT: Final = 1.0
"""Seconds of round trip that make a report bad however little was lost."""
DOWN_AFTER: Final = 3.0
"""Seconds of bad reports in a row before stepping down (again)."""
UP_AFTER: Final = 10.0
"""Seconds of good reports in a row before stepping up (again)."""


@dataclass
class VideoPolicy:
    """Feed it each report (``observe``); it answers with a new level when one is due."""

    bad_loss: float = BAD_LOSS
    good_loss: float = GOOD_LOSS
    bad_rtt: float = BAD_RTT
    down_after: float = DOWN_AFTER
    up_after: float = UP_AFTER
    level: int = 0  # index into LEVELS
    _bad_since: float | None = None
    _good_since: float | None = None

    @property
    def current(self) -> VideoLevel:
        return LEVELS[self.level]

    def observe(self, now: float, loss: float | None, rtt: float | None) -> VideoLevel | None:
        """One look at the link; the new level when it changes, else None.

        ``loss`` is a fraction (0 to 1), ``rtt`` seconds; None for "no fresh
        report": no news, which changes nothing.
        """
        if loss is None and rtt is None:
            return None
        bad = (loss is not None and loss >= self.bad_loss) or (
            rtt is not None and rtt >= self.bad_rtt
        )
        good = (
            loss is not None and loss <= self.good_loss and (rtt is None or rtt < self.bad_rtt / 2)
        )
        if bad:
            self._good_since = None
            if self._bad_since is None:
                self._bad_since = now
            if now - self._bad_since >= self.down_after and self.level < len(LEVELS) - 1:
                self.level += 1
                self._bad_since = now  # the next step down needs its own run of bad reports
                return self.current
        elif good:
            self._bad_since = None
            if self._good_since is None:
                self._good_since = now
            if now - self._good_since >= self.up_after and self.level > 0:
                self.level -= 1
                self._good_since = now
                return self.current
        else:
            self._bad_since = self._good_since = None
        return None

    def reset(self) -> None:
        """A new call starts at the best level."""
        self.level = 0
        self._bad_since = self._good_since = None

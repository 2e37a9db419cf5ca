"""How much video a poor link or a busy booth can carry: a pure policy over samples.

The clinician's browser tells the booth, in RTCP receiver reports, what
fraction of its packets were lost and (through the timing fields) the round
trip. When loss stays high the booth sends smaller, slower video, and in the
end none, so that the voice (what a visit needs most) keeps getting through;
audio is never stepped down. When the link has been clean for a while, video
steps back up. Stepping down is quick and stepping up slow, so a link on the
edge does not make the picture flap.

The booth's own CPU counts the same way. A booth that cannot encode its
picture in time (the camera track's frames go out late or are dropped, or the
process uses more CPU than its budget) would starve the voice sharing the
same loop, so video steps down exactly as for loss. Coming back after a CPU
step down waits longer (:data:`CPU_UP_AFTER`), and twice as long again each
time the bigger picture overloads the booth soon after, so a booth that only
just cannot manage "full" settles on "reduced" instead of flapping.

Each level also caps the video bitrate (:func:`video_bitrate`), and the far
side's estimate of what it can receive (REMB) lowers it further: aiortc's own
encoders take REMB themselves; a camera that encodes H.264 in hardware is told
the number (``kiosk/call/passthrough.py``).

Pure: samples in, a level out; the engine (``kiosk/call/engine.py``) feeds it
and :mod:`kiosk.call.load` measures.
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
    bitrate: int = 800_000  # bits a second at most, for a 640x480 picture (scaled by size)

    @property
    def off(self) -> bool:
        return self.scale == 0.0


LEVELS: Final = (
    VideoLevel("full", 1.0, 20, 800_000),
    VideoLevel("reduced", 0.5, 12, 250_000),
    VideoLevel("off", 0.0, 1, 50_000),
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
BAD_LATE: Final = 0.25
"""A look in which this fraction of the booth's pictures or more went out late or was dropped
means the booth cannot keep up ..."""
GOOD_LATE: Final = 0.05
"""... and one with this or less means it can."""
CPU_BUDGET: Final = 2.0
"""Cores the booth process may keep busy (half a Pi 4's four: the rest is the system's,
PipeWire's echo canceller's, the screen's compositor's); at or over it the booth is overloaded."""
CPU_HEADROOM: Final = 0.7
"""Stepping up after a CPU step down needs the process under this fraction of its budget."""
CPU_UP_AFTER: Final = 30.0
"""Seconds the booth must keep up before trying the bigger picture again after a CPU step down."""
CPU_UP_MAX: Final = 240.0
"""The longest that wait grows to (it doubles each time the bigger picture overloads again)."""
REFERENCE_PIXELS: Final = 640 * 480
"""The picture size the levels' bitrates are for."""
MIN_BITRATE: Final = 50_000
"""The least any video is given, whatever the far side estimates."""
AUDIO_SHARE: Final = 64_000
"""Bits a second of the far side's estimate (REMB) left for the voice and RTCP."""


def video_bitrate(
    level: VideoLevel, remb: int | None = None, size: tuple[int, int] | None = None
) -> int:
    """Bits a second to encode at: the level's cap for ``size``, lowered to the far side's
    estimate ``remb`` (less the voice's share), never under :data:`MIN_BITRATE`."""
    cap = level.bitrate
    if size is not None and size[0] > 0 and size[1] > 0:
        cap = int(cap * min(3.0, max(0.25, size[0] * size[1] / REFERENCE_PIXELS)))
    if remb is not None:
        cap = min(cap, remb - AUDIO_SHARE)
    return max(MIN_BITRATE, cap)


@dataclass
class VideoPolicy:
    """Feed it each report (``observe``); it answers with a new level when one is due.

    ``follow_cpu=False`` ignores the booth's own load (``late``, ``cpu``):
    only the link counts, as before the CPU was watched.
    """

    bad_loss: float = BAD_LOSS
    good_loss: float = GOOD_LOSS
    bad_rtt: float = BAD_RTT
    down_after: float = DOWN_AFTER
    up_after: float = UP_AFTER
    bad_late: float = BAD_LATE
    good_late: float = GOOD_LATE
    cpu_budget: float = CPU_BUDGET
    cpu_up_after: float = CPU_UP_AFTER
    cpu_up_max: float = CPU_UP_MAX
    follow_cpu: bool = True
    level: int = 0  # index into LEVELS
    cause: str | None = None
    """Why the level last changed: "link" or "cpu" (for the log); None at the top."""
    _bad_since: float | None = None
    _good_since: float | None = None
    _cpu_wait: float | None = None  # the wait to step up after a CPU step down; None: none
    _up_at: float | None = None  # when the level last went up

    @property
    def current(self) -> VideoLevel:
        return LEVELS[self.level]

    def observe(
        self,
        now: float,
        loss: float | None,
        rtt: float | None,
        *,
        late: float | None = None,
        cpu: float | None = None,
    ) -> VideoLevel | None:
        """One look at the link and the booth; the new level when it changes, else None.

        ``loss`` is a fraction (0 to 1), ``rtt`` seconds; None for "no fresh
        report": no news, which changes nothing. ``late`` is the fraction of
        the booth's pictures since the last look that went out late or were
        dropped, ``cpu`` the cores the booth process kept busy meanwhile;
        None for "not measured".
        """
        if not self.follow_cpu:
            late = cpu = None
        link_news = loss is not None or rtt is not None
        if not link_news and late is None and cpu is None:
            return None
        link_bad = (loss is not None and loss >= self.bad_loss) or (
            rtt is not None and rtt >= self.bad_rtt
        )
        cpu_bad = (late is not None and late >= self.bad_late) or (
            cpu is not None and cpu >= self.cpu_budget
        )
        cpu_good = (late is None or late <= self.good_late) and (
            cpu is None or cpu <= self.cpu_budget * CPU_HEADROOM
        )
        link_good = (
            loss is not None and loss <= self.good_loss and (rtt is None or rtt < self.bad_rtt / 2)
        )
        if link_bad or cpu_bad:
            self._good_since = None
            if self._bad_since is None:
                self._bad_since = now
            if now - self._bad_since >= self.down_after and self.level < len(LEVELS) - 1:
                self.level += 1
                self._bad_since = now  # the next step down needs its own run of bad reports
                self.cause = "link" if link_bad else "cpu"
                if not link_bad:
                    self._overloaded(now)
                return self.current
        elif link_good and cpu_good:
            self._bad_since = None
            if self._good_since is None:
                self._good_since = now
            wait = max(self.up_after, self._cpu_wait or 0.0)
            if now - self._good_since >= wait and self.level > 0:
                self.level -= 1
                self._good_since = now
                self._up_at = now
                self.cause = "link" if self._cpu_wait is None else "cpu"
                return self.current
        elif not link_news:
            pass  # the booth keeps up, and no word from the link: no news
        else:
            self._bad_since = self._good_since = None
        return None

    def _overloaded(self, now: float) -> None:
        """A step down for the CPU: stepping up waits longer, the more so if it just went up."""
        if self._cpu_wait is None:
            self._cpu_wait = self.cpu_up_after
        elif self._up_at is not None and now - self._up_at <= self._cpu_wait:
            self._cpu_wait = min(self.cpu_up_max, 2 * self._cpu_wait)

    def reset(self) -> None:
        """A new call starts at the best level."""
        self.level = 0
        self.cause = None
        self._bad_since = self._good_since = None
        self._cpu_wait = self._up_at = None

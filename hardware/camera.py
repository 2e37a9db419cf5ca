"""Cameras behind one small interface; the simulated twin is a moving test card.

Frames are held in memory only, newest first and one at a time: nothing in
this module (or anywhere in the booth) writes an image anywhere.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Frame:
    """One RGB picture, rows bottom-up (as OpenGL and Kivy textures want them)."""

    width: int
    height: int
    rgb: bytes = field(repr=False)


class Camera(Protocol):
    """What the booth needs from any camera: open, the newest frame, close."""

    def open(self) -> None: ...

    def latest(self) -> Frame | None: ...

    def close(self) -> None: ...


_BARS = [
    (235, 235, 235),
    (235, 235, 16),
    (16, 235, 235),
    (16, 235, 16),
    (235, 16, 235),
    (235, 16, 16),
    (16, 16, 235),
]


class TestCard:
    """Colour bars with a block sweeping across, so a self-view visibly moves.

    Drawn on demand from the clock, with no thread: the booth asks for a
    frame only while something shows it.
    """

    __test__ = False  # not a pytest class

    def __init__(self, width: int = 320, height: int = 240, clock: object = time.monotonic) -> None:
        self.width, self.height = width, height
        self._clock = clock
        self._open = False
        bar_w = math.ceil(width / len(_BARS))
        row = b"".join(bytes(_BARS[min(x // bar_w, len(_BARS) - 1)]) for x in range(width))
        self._row = row

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def latest(self) -> Frame | None:
        if not self._open:
            return None
        now = float(self._clock())  # type: ignore[operator]
        return self.frame_at(now)

    def frame_at(self, t: float) -> Frame:
        """The card at time ``t``: bars, and a dark block at a position set by ``t``."""
        w, h = self.width, self.height
        size = max(8, h // 5)
        x0 = int((t * 80) % max(1, w - size))
        y0 = (h - size) // 2
        block = bytes((20, 20, 20)) * size
        rows = []
        for y in range(h):
            if y0 <= y < y0 + size:
                rows.append(self._row[: x0 * 3] + block + self._row[(x0 + size) * 3 :])
            else:
                rows.append(self._row)
        return Frame(w, h, b"".join(rows))

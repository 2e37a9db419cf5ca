"""Microphone level behind a small interface; the simulated twin "speaks" in bursts.

Only a level (0 to 1) is ever computed from the microphone here, for the
device check's moving bar; no audio is kept.
"""

from __future__ import annotations

import math
import time
from typing import Protocol


class Microphone(Protocol):
    def open(self) -> None: ...

    def level(self) -> float: ...

    def close(self) -> None: ...


class SimulatedMicrophone:
    """A level that rises and falls like speech, so the bar visibly moves."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._open = False

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def level(self) -> float:
        if not self._open:
            return 0.0
        return self.level_at(float(self._clock()))  # type: ignore[operator]

    @staticmethod
    def level_at(t: float) -> float:
        syllables = abs(math.sin(t * 7.0))
        phrases = 0.3 + 0.7 * (0.5 + 0.5 * math.sin(t * 1.3))  # louder and softer, never silent
        return round(min(1.0, syllables * phrases), 3)

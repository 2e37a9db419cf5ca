"""Microphone and call speaker behind small interfaces, each with a simulated twin.

The device check needs only a level (0 to 1) from the microphone, for its
moving bar. A call needs sound: a :class:`PcmMicrophone` also gives samples,
and a :class:`Speaker` plays the clinician's voice. Call audio is always
48 kHz, 16-bit signed little-endian mono (:data:`SAMPLE_RATE`), which is what
Opus speaks natively, so nothing here resamples. No audio is ever kept or
written anywhere: samples pass through and are gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Sequence
from typing import Final, Protocol, runtime_checkable

import numpy as np

from hardware.speech import pipewire_running

_log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 48_000
"""Samples a second of call audio."""
TONE_HZ: Final = 440.0
"""The simulated microphone's note: easy to find in a spectrum, easy to hear."""
VOLUME_STEPS: Final = 10
"""Volume runs 0 (silent) to 10 (full), as the booth's volume buttons count."""
STEP_DB: Final = 3.0
"""Each volume step is 3 dB: equal steps sound equally far apart, unlike equal gains."""


class Microphone(Protocol):
    def open(self) -> None: ...

    def level(self) -> float: ...

    def close(self) -> None: ...


@runtime_checkable
class PcmMicrophone(Microphone, Protocol):
    """A microphone a call can take sound from, not only a level."""

    def read(self, samples: int) -> bytes:
        """The next ``samples`` samples (s16le mono, :data:`SAMPLE_RATE`); zeros when closed."""
        ...


class SimulatedMicrophone:
    """A level that rises and falls like speech, so the bar visibly moves.

    As a call's microphone it "speaks" a 440 Hz tone whose loudness follows
    that level but never reaches silence, so the far side can tell it from
    the silence a paused or muted booth sends.
    """

    def __init__(self, clock: object = time.monotonic) -> None:
        self._clock = clock
        self._open = False
        self._samples = 0  # samples read so far: keeps the tone's phase continuous

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

    def read(self, samples: int) -> bytes:
        start = self._samples
        self._samples += samples
        if not self._open:
            return bytes(2 * samples)
        amplitude = 0.5 * (0.2 + 0.8 * self.level())
        n = np.arange(start, start + samples, dtype=np.float64)
        wave = np.sin(2.0 * math.pi * TONE_HZ * n / SAMPLE_RATE) * (amplitude * 32767.0)
        return wave.astype("<i2").tobytes()


# ---------------------------------------------------------------- speaker


class Speaker(Protocol):
    """Where the clinician's voice goes. ``play`` never blocks: audio late is audio lost."""

    def open(self) -> None: ...

    def play(self, pcm: bytes) -> None:
        """Play s16le mono samples at :data:`SAMPLE_RATE`, after the volume is applied."""
        ...

    def set_volume(self, level: int) -> None:
        """0 (silent) to :data:`VOLUME_STEPS`; held under the speaker's configured cap."""
        ...

    def close(self) -> None: ...


def gain(level: int, cap: int = VOLUME_STEPS) -> float:
    """The factor for a volume ``level``, clamped to 0..``cap``: 0 is silence, 10 is unity."""
    level = max(0, min(level, cap, VOLUME_STEPS))
    if level == 0:
        return 0.0
    return float(10.0 ** ((level - VOLUME_STEPS) * STEP_DB / 20.0))


def apply_volume(pcm: bytes, factor: float) -> bytes:
    """``pcm`` (s16le) scaled by ``factor``, clipped rather than wrapped around."""
    if factor == 1.0:
        return pcm
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.float32)
    return bytes(np.clip(samples * factor, -32768, 32767).astype("<i2").tobytes())


def rms(pcm: bytes) -> float:
    """Loudness of s16le samples, 0 (silence) to 1 (full scale)."""
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    if samples.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)) / 32768.0)


class _Volume:
    def __init__(self, volume: int, max_volume: int) -> None:
        self.max_volume = max(0, min(max_volume, VOLUME_STEPS))
        self.volume = 0
        self.set_volume(volume)

    def set_volume(self, level: int) -> None:
        self.volume = max(0, min(level, self.max_volume))

    @property
    def gain(self) -> float:
        return gain(self.volume, self.max_volume)


class SimulatedSpeaker(_Volume):
    """Counts what it is given and how loud it was, for tests and the simulator."""

    def __init__(self, volume: int = 6, *, max_volume: int = VOLUME_STEPS) -> None:
        super().__init__(volume, max_volume)
        self.is_open = False
        self.samples = 0
        """Samples played since the speaker was made."""
        self.loud_samples = 0
        """Samples played from chunks louder than a whisper (RMS over 0.01)."""
        self.level = 0.0
        """RMS (0 to 1) of the latest chunk, after the volume."""

    def open(self) -> None:
        self.is_open = True

    def play(self, pcm: bytes) -> None:
        out = apply_volume(pcm, self.gain)
        count = len(out) // 2
        self.samples += count
        self.level = rms(out)
        if self.level > 0.01:
            self.loud_samples += count

    def close(self) -> None:
        self.is_open = False


def wav_stream_header(rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    """A WAV header for a stream of unknown length: both aplay and pw-play read it from a pipe."""
    unknown = 0xFFFFFFFF
    byte_rate = rate * channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, byte_rate, channels * 2, 16)
        + b"data"
        + struct.pack("<I", unknown)
    )


def call_player_command(output: str | None = None, *, pipewire: bool | None = None) -> list[str]:
    """The player reading the call's WAV stream on stdin, with a short buffer for low delay."""
    if pipewire if pipewire is not None else pipewire_running():
        target = ["--target", output] if output else []
        return ["pw-play", "--latency", "60ms", *target, "-"]
    device = ["-D", output] if output else []
    return ["aplay", "-q", "--buffer-time", "100000", *device, "-"]


class PipeSpeaker(_Volume):
    """Plays call audio through ``pw-play`` or ``aplay`` reading a WAV stream on stdin.

    The pipe is non-blocking: when the player falls behind, the newest audio
    waits in a small buffer (``max_buffered`` seconds) and older audio is
    dropped, so the call never waits for the sound card. A missing or dying
    player is logged once and the speaker goes quiet; a call without sound
    beats no call. ``output`` is the device (a headset takes over),
    ``player`` replaces the command (it must read WAV on stdin).
    """

    def __init__(
        self,
        output: str | None = None,
        *,
        player: Sequence[str] | None = None,
        volume: int = 6,
        max_volume: int = VOLUME_STEPS,
        max_buffered: float = 0.2,
    ) -> None:
        super().__init__(volume, max_volume)
        self.output = output
        self._player = list(player) if player is not None else None
        self._max_pending = int(max_buffered * SAMPLE_RATE) * 2
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._pending = b""
        self._told: set[str] = set()
        self.dropped = 0
        """Bytes dropped because the player could not keep up."""

    @property
    def playing(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _once(self, key: str, message: str, *args: object) -> None:
        if key not in self._told:
            self._told.add(key)
            _log.warning(message, *args)

    def open(self) -> None:
        """Start the player (again, if it died); quiet and logged if it cannot start."""
        if self.playing:
            return
        self._stop()
        command = self._player or call_player_command(self.output)
        if shutil.which(command[0]) is None:
            self._once(f"missing:{command[0]}", "call audio off: %s is not installed", command[0])
            return
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except OSError as exc:
            self._once(f"error:{type(exc).__name__}", "call audio failed: %s", type(exc).__name__)
            return
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        try:
            os.write(fd, wav_stream_header())  # 44 bytes into an empty pipe: never blocks
        except OSError as exc:
            self._once("died", "call audio stopped: the player exited (%s)", type(exc).__name__)
            self._proc = proc
            self._stop()
            return
        self._proc, self._fd = proc, fd

    def play(self, pcm: bytes) -> None:
        if self._fd is None:
            return
        self._pending += apply_volume(pcm, self.gain)
        excess = len(self._pending) - self._max_pending
        if excess > 0:
            excess += excess % 2  # whole samples only
            self._pending = self._pending[excess:]
            self.dropped += excess
        try:
            written = os.write(self._fd, self._pending)
        except BlockingIOError:
            return
        except OSError as exc:  # the player went away (BrokenPipeError and friends)
            self._once("died", "call audio stopped: the player exited (%s)", type(exc).__name__)
            self._stop()
            return
        self._pending = self._pending[written:]

    def close(self) -> None:
        """Stop the player at once; whatever it still buffered is not worth waiting for."""
        self._stop()

    def _stop(self) -> None:
        proc, self._proc, self._fd, self._pending = self._proc, None, None, b""
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)

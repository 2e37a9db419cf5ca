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
import json
import logging
import math
import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
        self.input: str | None = None
        """Where a real microphone would listen (set by the audio routing): for tests."""
        self.dead = False
        """The simulator's ``device fail microphone``: open, but nothing but digital silence."""

    def set_input(self, device: str | None) -> None:
        self.input = device

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def level(self) -> float:
        if not self._open or self.dead:
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
        if not self._open or self.dead:
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

    def set_max_volume(self, cap: int) -> None:
        """A new cap (a headset's is lower: it is at the ear); the volume comes down to it."""
        self.max_volume = max(0, min(cap, VOLUME_STEPS))
        self.set_volume(self.volume)

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
        self.output: str | None = None
        """Where a real speaker would play (set by the audio routing): for tests."""

    def set_output(self, device: str | None) -> None:
        self.output = device

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


class _Tool:
    """A helper program (player or recorder) of one device, and its problems told once each.

    A missing player is news once, not every 20 ms; nothing here raises into a call.
    """

    def __init__(self, what: str) -> None:
        self.what = what  # "call audio", "microphone": the start of every log line
        self._told: set[str] = set()

    def once(self, key: str, message: str, *args: object) -> None:
        if key not in self._told:
            self._told.add(key)
            _log.warning(message, *args)

    def start(self, command: Sequence[str], *, feed: bool) -> subprocess.Popen[bytes] | None:
        """Start ``command`` with a pipe to its stdin (``feed``) or from its stdout; None if not."""
        if shutil.which(command[0]) is None:
            self.once(f"missing:{command[0]}", "%s off: %s is not installed", self.what, command[0])
            return None
        try:
            return subprocess.Popen(
                list(command),
                stdin=subprocess.PIPE if feed else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if feed else subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except OSError as exc:
            name = type(exc).__name__
            self.once(f"error:{name}", "%s failed: %s", self.what, name)
            return None


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Stop a helper at once and reap it; what it still buffered is not worth waiting for."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=2.0)


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
        self._tool = _Tool("call audio")
        self._lock = threading.RLock()  # the call thread plays; the booth's loop re-routes
        self.dropped = 0
        """Bytes dropped because the player could not keep up."""

    @property
    def playing(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def open(self) -> None:
        """Start the player (again, if it died); quiet and logged if it cannot start."""
        with self._lock:
            self._open_locked()

    def _open_locked(self) -> None:
        if self.playing:
            return
        self._stop()
        proc = self._tool.start(self._player or call_player_command(self.output), feed=True)
        if proc is None:
            return
        assert proc.stdin is not None
        fd = proc.stdin.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
        try:
            os.write(fd, wav_stream_header())  # 44 bytes into an empty pipe: never blocks
        except OSError as exc:
            self._player_died(exc)
            self._proc = proc
            self._stop()
            return
        self._proc, self._fd = proc, fd

    def set_output(self, device: str | None) -> None:
        """Play on ``device`` from now on (a headset came or went); a running player moves."""
        with self._lock:
            if device == self.output:
                return
            self.output = device
            if self._proc is not None:
                self._stop()
                self._open_locked()

    def play(self, pcm: bytes) -> None:
        with self._lock:
            self._play_locked(pcm)

    def _play_locked(self, pcm: bytes) -> None:
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
            self._player_died(exc)
            self._stop()
            return
        self._pending = self._pending[written:]

    def close(self) -> None:
        """Stop the player at once; whatever it still buffered is not worth waiting for."""
        with self._lock:
            self._stop()

    def _player_died(self, exc: OSError) -> None:
        self._tool.once("died", "call audio stopped: the player exited (%s)", type(exc).__name__)

    def _stop(self) -> None:
        proc, self._proc, self._fd, self._pending = self._proc, None, None, b""
        if proc is None:
            return
        _end(proc)
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.close()


# ---------------------------------------------------------------- microphone

WAV_HEADER_LIMIT: Final = 4096
"""The most header a recorder may write before its samples; more is not a WAV stream we know."""


def recorder_command(device: str | None = None, *, pipewire: bool | None = None) -> list[str]:
    """A recorder writing the microphone to stdout: 48 kHz s16 mono, raw or in a WAV stream.

    ``pw-record`` on PipeWire (``--target`` a node), else ``arecord`` (``-D`` an
    ALSA device). Whether a header comes first or not, :class:`PipeMicrophone`
    copes.
    """
    if pipewire if pipewire is not None else pipewire_running():
        target = ["--target", device] if device else []
        return [
            "pw-record", "--rate", str(SAMPLE_RATE), "--channels", "1", "--format", "s16",
            "--latency", "20ms", *target, "-",
        ]  # fmt: skip
    dev = ["-D", device] if device else []
    return [
        "arecord", "-q", "-t", "raw", "-f", "S16_LE", "-r", str(SAMPLE_RATE), "-c", "1",
        "--buffer-time", "100000", *dev, "-",
    ]  # fmt: skip


def skip_wav_header(data: bytes) -> bytes | None:
    """The samples after a WAV header at the start of ``data``; None while more is needed.

    Data that does not start with ``RIFF`` is taken as raw samples already.
    """
    if len(data) < 4:
        return None if b"RIFF".startswith(data) else data
    if data[:4] != b"RIFF":
        return data
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"data":
            return data[pos + 8 :]
        pos += 8 + size + (size & 1)
    if len(data) > WAV_HEADER_LIMIT:
        return b""  # not a header we understand: drop it rather than play noise
    return None


class PipeMicrophone:
    """The microphone through ``pw-record`` or ``arecord``, read on a thread.

    :meth:`read` never blocks: it hands out what has arrived, padded with
    silence when the recorder is behind, and keeps at most ``max_buffered``
    seconds (older sound is dropped: a call wants the present). The booth
    uses the echo-cancelled source PipeWire's echo-cancel module makes
    (:data:`EC_SOURCE`), or a headset's microphone when one is plugged in.
    A missing or dying recorder is logged once and the microphone goes
    silent, which the device watch then reports as a fault.
    """

    def __init__(
        self,
        device: str | None = None,
        *,
        recorder: Sequence[str] | None = None,
        max_buffered: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.input = device
        self._recorder = list(recorder) if recorder is not None else None
        self._max = int(max_buffered * SAMPLE_RATE) * 2
        self._clock = clock
        self._lock = threading.Lock()
        self._buffer = bytearray()
        self._recent = b""  # the last 50 ms, for the level bar
        self._last_data = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._open = False
        self._tool = _Tool("microphone")

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def recording(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def set_input(self, device: str | None) -> None:
        """Listen on ``device`` from now on (a headset came or went)."""
        if device == self.input:
            return
        self.input = device
        if self._open:
            self._stop()
            self._start()

    def open(self) -> None:
        if self._open:
            return
        self._open = True
        self._start()

    def _start(self) -> None:
        proc = self._tool.start(self._recorder or recorder_command(self.input), feed=False)
        if proc is None:
            return
        self._proc = proc
        self._thread = threading.Thread(
            target=self._pump, args=(proc,), name="microphone", daemon=True
        )
        self._thread.start()

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        head: bytes | None = b""
        pending = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            if head is not None:
                head += chunk
                samples = skip_wav_header(head)
                if samples is None:
                    continue
                head, chunk = None, samples
            pending += chunk
            whole = len(pending) - len(pending) % 2
            data, pending = pending[:whole], pending[whole:]
            if not data:
                continue
            with self._lock:
                self._buffer += data
                excess = len(self._buffer) - self._max
                if excess > 0:
                    del self._buffer[: excess + excess % 2]
                self._recent = (self._recent + data)[-int(0.05 * SAMPLE_RATE) * 2 :]
                self._last_data = self._clock()
        if self._open and self._proc is proc:
            self._tool.once("died", "microphone stopped: the recorder exited")

    def read(self, samples: int) -> bytes:
        want = 2 * samples
        with self._lock:
            data = bytes(self._buffer[:want])
            del self._buffer[:want]
        return data + bytes(want - len(data))

    def level(self) -> float:
        """How loud the last 50 ms were, 0 to 1, scaled so speech fills most of the bar."""
        with self._lock:
            if not self._open or self._clock() - self._last_data > 0.5:
                return 0.0
            recent = self._recent
        return min(1.0, round(rms(recent) * 8.0, 3))

    def close(self) -> None:
        self._open = False
        self._stop()

    def _stop(self) -> None:
        proc, thread, self._proc, self._thread = self._proc, self._thread, None, None
        if proc is not None:
            _end(proc)
        if thread is not None:
            thread.join(timeout=2.0)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        with self._lock:
            self._buffer.clear()  # no sound outlives the microphone being open
            self._recent = b""


# ---------------------------------------------------------------- routing

EC_SINK: Final = "telehealth_ec_sink"
"""The echo-cancelled sink PipeWire's echo-cancel module makes (``kiosk-provision install``)."""
EC_SOURCE: Final = "telehealth_ec_source"
"""The echo-cancelled source: the microphone with the booth's own speaker taken out."""


@dataclass(frozen=True)
class AudioNode:
    """A PipeWire audio node: its name, ``Audio/Sink`` or ``Audio/Source``, its ALSA card."""

    name: str
    media_class: str
    card: int | None = None


def parse_pw_dump(text: str) -> list[AudioNode]:
    """The audio sinks and sources in ``pw-dump``'s JSON; [] for anything unreadable."""
    try:
        objects = json.loads(text)
    except ValueError:
        return []
    out: list[AudioNode] = []
    if not isinstance(objects, list):
        return out
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("type") != "PipeWire:Interface:Node":
            continue
        info = obj.get("info")
        props = info.get("props") if isinstance(info, dict) else None
        if not isinstance(props, dict):
            continue
        name, media_class = props.get("node.name"), props.get("media.class")
        if not isinstance(name, str) or media_class not in ("Audio/Sink", "Audio/Source"):
            continue
        card: int | None = None
        for key in ("api.alsa.card", "alsa.card"):
            value = props.get(key)
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                card = int(value)
                break
        out.append(AudioNode(name, str(media_class), card))
    return out


def pipewire_nodes(timeout: float = 3.0) -> list[AudioNode]:
    """The running PipeWire's audio nodes (``pw-dump``); [] when it cannot be asked."""
    if shutil.which("pw-dump") is None:
        return []
    try:
        done = subprocess.run(
            ["pw-dump"], capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if done.returncode != 0:
        return []
    return parse_pw_dump(done.stdout.decode("utf-8", errors="replace"))


@dataclass(frozen=True)
class Route:
    """Where call audio and spoken prompts go: device names, None for the system default."""

    speaker: str | None
    microphone: str | None
    headset: bool
    max_volume: int


AUTO: Final = "auto"
DEFAULT: Final = "default"


class AudioRouter:
    """Picks the devices for a headset plugged in (its ALSA card) or none.

    Without a headset: the configured devices, where ``auto`` means PipeWire's
    echo-cancelled sink and source when they exist (residents sit close to
    an open speaker) and ``default`` the system's default. With a headset:
    its own output and microphone (on PipeWire, the nodes of its card; on
    ALSA, ``plughw:N``), echo cancellation not being needed at the ear, and
    the lower headset volume cap.
    """

    def __init__(
        self,
        speaker: str = AUTO,
        microphone: str = AUTO,
        *,
        max_volume: int = VOLUME_STEPS,
        headset_max_volume: int = VOLUME_STEPS,
        pipewire: bool | None = None,
        nodes: Callable[[], list[AudioNode]] = pipewire_nodes,
    ) -> None:
        self.speaker, self.microphone = speaker, microphone
        self.max_volume, self.headset_max_volume = max_volume, headset_max_volume
        self._pipewire = pipewire
        self._nodes = nodes

    def route(self, headset_card: int | None) -> Route:
        pipewire = self._pipewire if self._pipewire is not None else pipewire_running()
        if headset_card is not None:
            if not pipewire:
                device = f"plughw:{headset_card}"
                return Route(device, device, True, self.headset_max_volume)
            nodes = self._nodes()
            sink = _node_of(nodes, "Audio/Sink", card=headset_card)
            source = _node_of(nodes, "Audio/Source", card=headset_card)
            if sink is None or source is None:
                _log.warning("headset: PipeWire has no node for its card yet; using the default")
            return Route(sink, source, True, self.headset_max_volume)
        nodes = self._nodes() if pipewire and AUTO in (self.speaker, self.microphone) else []
        return Route(
            self._pick(self.speaker, nodes, "Audio/Sink", EC_SINK, pipewire),
            self._pick(self.microphone, nodes, "Audio/Source", EC_SOURCE, pipewire),
            False,
            self.max_volume,
        )

    @staticmethod
    def _pick(
        setting: str, nodes: list[AudioNode], media_class: str, echo_cancelled: str, pipewire: bool
    ) -> str | None:
        if setting == DEFAULT:
            return None
        if setting != AUTO:
            return setting
        if pipewire and _node_of(nodes, media_class, name=echo_cancelled) is not None:
            return echo_cancelled
        return None


def _node_of(
    nodes: list[AudioNode], media_class: str, *, card: int | None = None, name: str | None = None
) -> str | None:
    for node in nodes:
        if node.media_class != media_class:
            continue
        if (card is not None and node.card == card) or (name is not None and node.name == name):
            return node.name
    return None

"""``kiosk-provision selftest``: prove a booth works before the technician leaves.

Every check ends in one :class:`Check`: PASS, FAIL or SKIP, what was checked
and found, and for anything but a pass what to do about it. A check that
cannot run here (no Raspberry Pi, no technician at the booth) is a SKIP that
says so, never a pass. The report is the same in text and JSON; the command
exits non-zero when anything failed.

The hardware checks drive the booth's own code (``BoothGpio``, the camera,
microphone and speaker classes), so ``--simulate`` runs them against the
simulated twins: gpiozero's ``MockFactory`` pins, the test card, the simulated
microphone and speaker. A person is needed for what only a person can tell
(did the tone sound, is the light on, open the door): a :class:`Technician`.
The terminal one asks; :class:`SimulatedTechnician` acts on the simulated
pins from a thread and answers by looking at the simulated devices, unless a
script tells it to do nothing or answer no (to rehearse a broken booth).

Network checks (hub, STUN/TURN) and machine checks (clock, disk, power,
temperature) are never simulated: they look at the real network and machine,
with paths under ``--root`` so tests can give them a machine of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import json
import math
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import numpy as np

from hardware.audio import SAMPLE_RATE, Microphone, Speaker, rms
from hardware.camera import Camera
from hardware.events import (
    DoorClosed,
    DoorOpened,
    EmergencyHeld,
    EmergencyReleased,
    HardwareEvent,
    HardwareFault,
)
from kiosk.config import BoothConfig, Hardware, Hub, IceServer
from kiosk.errors import HardwareError, KioskError

TIMEOUT_S: Final = 30.0
"""How long a door or button check waits for the technician by default."""
CAMERA_SECONDS: Final = 1.5
MICROPHONE_SECONDS: Final = 1.5
TONE_SECONDS: Final = 1.0
TONE_HZ: Final = 880.0
MIN_LEVEL: Final = 0.02
"""A microphone whose loudest moment stays under this is taken as dead or muted."""
MIN_FREE_BYTES: Final = 1 << 30
"""An update unpacks a whole release beside the running one; less free space than this fails."""
HOT_C: Final = 80.0
"""The Pi's firmware starts throttling at 80 °C: at that temperature the booth is too hot."""
NETWORK_TIMEOUT_S: Final = 5.0


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the report: ``fix`` says what to do (empty for a pass)."""

    name: str
    outcome: Outcome
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.outcome.value.upper():<4}  {self.name:<17} {self.detail}"
        return f"{text}; fix: {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, str]:
        return {
            "name": self.name,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.outcome is not Outcome.FAIL for c in self.checks)

    def count(self, outcome: Outcome) -> int:
        return sum(c.outcome is outcome for c in self.checks)

    def summary(self) -> str:
        # Worded so it never reads like a test runner's closing line.
        failed = self.count(Outcome.FAIL)
        verdict = "booth OK" if failed == 0 else f"{failed} check(s) FAILED"
        return (
            f"Summary: {verdict} ({self.count(Outcome.PASS)} pass, {failed} fail, "
            f"{self.count(Outcome.SKIP)} skip)"
        )

    def text(self) -> str:
        return "".join(c.line() + "\n" for c in self.checks) + self.summary() + "\n"

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Report:
        return cls(
            tuple(
                Check(c["name"], Outcome(c["outcome"]), c["detail"], c["fix"])
                for c in data["checks"]
            )
        )


def _passed(name: str, detail: str) -> Check:
    return Check(name, Outcome.PASS, detail)


def _failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, Outcome.FAIL, detail, fix)


def _skipped(name: str, detail: str, fix: str) -> Check:
    return Check(name, Outcome.SKIP, detail, fix)


NEEDS_A_PERSON: Final = "run `kiosk-provision selftest --interactive` at the booth"


# ---------------------------------------------------------------- the technician


class Technician(Protocol):
    """Whoever stands at the booth: told what to do, asked what they saw or heard."""

    @property
    def present(self) -> bool:
        """False when nobody answers (``--no-prompt``): checks needing a person are skipped."""
        ...

    def tell(self, text: str) -> None: ...

    def do(self, device: str, action: str, text: str) -> None:
        """Ask for ``action`` (open, close, hold, release) on ``device``; returns at once."""
        ...

    def confirm(self, device: str, question: str) -> bool: ...

    def close(self) -> None: ...


class Nobody:
    """``--no-prompt``: no one at the booth, so person-checks are reported as skipped."""

    present = False

    def tell(self, text: str) -> None:
        pass

    def do(self, device: str, action: str, text: str) -> None:
        pass

    def confirm(self, device: str, question: str) -> bool:
        return False

    def close(self) -> None:
        pass


class TerminalTechnician:
    """A person at the terminal: instructions on stderr, yes/no answers from stdin."""

    present = True

    def __init__(
        self,
        read: Callable[[], str] = sys.stdin.readline,
        write: Callable[[str], Any] | None = None,
    ) -> None:
        self._read = read
        self._write = write or sys.stderr.write

    def tell(self, text: str) -> None:
        self._write(f">>> {text}\n")

    def do(self, device: str, action: str, text: str) -> None:
        self.tell(text)

    def confirm(self, device: str, question: str) -> bool:
        while True:
            self._write(f">>> {question} [y/n] ")
            answer = self._read()
            if answer == "":
                self._write("\n")
                return False  # end of input: nobody to say yes
            answer = answer.strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False

    def close(self) -> None:
        pass


ACTIONS: Final = {
    "door": ("act", "ignore", "cut", "short"),
    "emergency_button": ("act", "ignore", "cut", "short"),
    "speaker": ("listen", "yes", "no"),
    "occupancy_light": ("look", "yes", "no"),
    "alarm_light": ("look", "yes", "no"),
}
"""What a selftest script may say per device; the first value is the default.

``cut`` and ``short`` rehearse broken wiring: the wire is cut (or shorted) before
the booth's GPIO starts, and stays so whatever the technician does."""


class ScriptError(KioskError):
    """A selftest script is unusable; the message names the file and key."""


def load_script(path: Path) -> dict[str, str]:
    """A TOML table ``device = "answer"``, checked against :data:`ACTIONS`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScriptError(f"{path}: no such file; give the path of the selftest script") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScriptError(f"{path}: not valid TOML: {exc}") from None
    out: dict[str, str] = {}
    for key, value in data.items():
        if key not in ACTIONS:
            raise ScriptError(f"{path}: {key}: not a device; use one of {', '.join(ACTIONS)}")
        if value not in ACTIONS[key]:
            listed = ", ".join(f'"{v}"' for v in ACTIONS[key])
            raise ScriptError(f"{path}: {key}: must be one of {listed}, not {value!r}")
        out[key] = value
    return out


class SimulatedWiringLike(Protocol):
    def open_door(self) -> None: ...

    def close_door(self) -> None: ...

    def press_emergency(self) -> None: ...

    def release_emergency(self) -> None: ...

    def cut(self, role: str) -> None: ...

    def short(self, role: str) -> None: ...


class SimulatedTechnician:
    """Hands on the simulated wiring, eyes and ears on the simulated devices.

    Actions are done from a thread a moment later, as a person would after
    reading the prompt, so the GPIO code sees the edges arrive the way real
    ones do. ``senses`` answer the questions ("look", "listen") by reading the
    simulated devices; a script may instead make it ignore a prompt or answer
    a fixed yes or no, or have a switch's wire cut or shorted from the start.

    Its hands are the only ones on the simulated wiring: a ``SimulatedWiring``
    keeps its own record of cut wires, so a wire cut through another one would be
    mended by the first door this technician moves (the pins are driven as a sound
    switch would drive them). Cut wires through :attr:`wiring`.
    """

    present = True
    DELAY_S: Final = 0.05

    def __init__(
        self,
        wiring: SimulatedWiringLike,
        senses: Mapping[str, Callable[[], bool]],
        script: Mapping[str, str] | None = None,
        write: Callable[[str], Any] | None = None,
    ) -> None:
        self._wiring = wiring
        self._senses = dict(senses)
        self._script = dict(script or {})
        self._write = write or (lambda text: None)
        self._threads: list[threading.Thread] = []
        for device, answer in self._script.items():
            if answer == "cut":
                wiring.cut(device)
            elif answer == "short":
                wiring.short(device)

    @property
    def wiring(self) -> SimulatedWiringLike:
        return self._wiring

    def _answer(self, device: str) -> str:
        return self._script.get(device, ACTIONS[device][0])

    def tell(self, text: str) -> None:
        self._write(f">>> {text}\n")

    def do(self, device: str, action: str, text: str) -> None:
        self.tell(text)
        if self._answer(device) == "ignore":
            return  # with "cut" or "short" the hands move, and the broken wire tells nothing
        moves = {
            ("door", "open"): self._wiring.open_door,
            ("door", "close"): self._wiring.close_door,
            ("emergency_button", "hold"): self._wiring.press_emergency,
            ("emergency_button", "release"): self._wiring.release_emergency,
        }
        move = moves[(device, action)]

        def later() -> None:
            time.sleep(self.DELAY_S)
            move()

        thread = threading.Thread(target=later, name=f"technician-{device}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def confirm(self, device: str, question: str) -> bool:
        answer = self._answer(device)
        result = self._senses[device]() if answer in ("look", "listen") else answer == "yes"
        self._write(f">>> {question} [y/n] {'y' if result else 'n'}\n")
        return result

    def close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)


# ---------------------------------------------------------------- camera, microphone, speaker


def check_camera(
    camera: Camera | None,
    seconds: float = CAMERA_SECONDS,
    *,
    choice: str = "auto",
    interval: float = 0.1,
) -> Check:
    """Frames must arrive, and the picture must change (a frozen camera is a failed one)."""
    name = "camera"
    if camera is None:
        return _failed(
            name,
            f"no camera found ([hardware] camera = {choice!r})",
            "connect the camera (ribbon cable to the CSI port, or a USB webcam) and run the "
            "selftest again",
        )
    try:
        camera.open()
    except Exception as exc:
        return _failed(
            name,
            f"the camera could not be opened ({exc})",
            "check the cable and that no other program uses the camera",
        )
    frames = 0
    pictures: set[bytes] = set()
    size = ""
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            frame = camera.latest()
            if frame is not None:
                frames += 1
                pictures.add(hashlib.sha256(frame.rgb).digest())
                size = f"{frame.width}x{frame.height}"
            time.sleep(interval)
    finally:
        with contextlib.suppress(Exception):
            camera.close()
    if frames == 0:
        return _failed(
            name,
            f"no frames in {seconds:g} s",
            "reseat the camera cable (contacts facing the right way) or replug the USB camera",
        )
    if len(pictures) < 2:
        return _failed(
            name,
            f"{frames} frames in {seconds:g} s, but the picture never changes (frozen)",
            "the camera is stuck: replug it, or restart the booth",
        )
    return _passed(name, f"{frames} frames in {seconds:g} s at {size}; the picture changes")


class RecordingMicrophone:
    """The booth's default capture device through ``arecord``, as a level (0 to 1).

    Only the level is computed; the samples are dropped as they are read.
    """

    CHUNK: Final = SAMPLE_RATE // 20

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self._command = list(
            command
            or ["arecord", "-q", "-t", "raw", "-f", "S16_LE", "-c", "1", "-r", str(SAMPLE_RATE)]
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def open(self) -> None:
        if shutil.which(self._command[0]) is None:
            raise HardwareError(f"{self._command[0]} is not installed (Debian package alsa-utils)")
        self._proc = subprocess.Popen(
            self._command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def level(self) -> float:
        if self._proc is None or self._proc.stdout is None:
            return 0.0
        pcm = self._proc.stdout.read(self.CHUNK * 2)
        return min(1.0, rms(pcm) * 4)  # speech at a metre is around -20 dBFS

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)


def check_microphone(
    microphone: Microphone, tech: Technician, seconds: float = MICROPHONE_SECONDS
) -> Check:
    """Some sound must reach the microphone: a dead or muted one reads silence."""
    name = "microphone"
    if tech.present:
        tech.tell("Say a few words towards the booth's microphone.")
    try:
        microphone.open()
    except Exception as exc:
        return _failed(
            name,
            f"the microphone could not be opened ({exc})",
            "plug the microphone in and check `arecord -l` lists it",
        )
    peak = 0.0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            peak = max(peak, microphone.level())
            time.sleep(0.02)
    finally:
        with contextlib.suppress(Exception):
            microphone.close()
    if peak < MIN_LEVEL:
        return _failed(
            name,
            f"silent: the loudest level in {seconds:g} s was {peak:.3f}",
            "check the microphone is plugged in and not muted (alsamixer, capture level)",
        )
    return _passed(name, f"hears sound: loudest level {peak:.2f} in {seconds:g} s")


def tone(seconds: float, hz: float = TONE_HZ, amplitude: float = 0.3) -> bytes:
    """A sine tone as s16le mono at :data:`SAMPLE_RATE`."""
    n = np.arange(int(seconds * SAMPLE_RATE), dtype=np.float64)
    wave = np.sin(2.0 * math.pi * hz * n / SAMPLE_RATE) * (amplitude * 32767.0)
    return wave.astype("<i2").tobytes()


def check_speaker(speaker: Speaker, tech: Technician, seconds: float = TONE_SECONDS) -> Check:
    """Play a tone; only a person can say it was heard."""
    name = "speaker"
    if not tech.present:
        return _skipped(name, "needs someone to listen for the tone", NEEDS_A_PERSON)
    tech.tell("Listen: a tone will play from the booth's speaker.")
    try:
        speaker.open()
        speaker.set_volume(8)
        pcm = tone(seconds)
        step = SAMPLE_RATE // 50 * 2  # 20 ms, paced in real time: the speaker never blocks
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(pcm), step)):
            speaker.play(pcm[offset : offset + step])
            time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
        time.sleep(0.2)  # let the player's buffer drain
    except Exception as exc:
        return _failed(name, f"the tone could not be played ({exc})", "check `aplay -l`")
    finally:
        with contextlib.suppress(Exception):
            speaker.close()
    if not tech.confirm("speaker", "Did you hear the tone?"):
        return _failed(
            name,
            f"a {TONE_HZ:g} Hz tone was played for {seconds:g} s and not heard",
            "check the speaker cable and power, and the volume in alsamixer",
        )
    return _passed(name, f"a {TONE_HZ:g} Hz tone was played and heard")


# ---------------------------------------------------------------- door, button, lights


class _Events:
    """The booth's hardware events as the checks see them, with every wiring fault kept.

    A fault is remembered for the whole self-test, whichever check was waiting
    when it came, so clearing stale door or button events never loses one.
    """

    def __init__(self) -> None:
        self.queue: asyncio.Queue[HardwareEvent] = asyncio.Queue()
        self.faults: dict[str, str] = {}

    def put(self, event: HardwareEvent) -> None:
        self.queue.put_nowait(event)

    def _note(self, event: HardwareEvent) -> None:
        if isinstance(event, HardwareFault):
            self.faults.setdefault(event.device, event.reason)

    async def wait_for(
        self, wanted: tuple[type, ...], timeout: float, device: str
    ) -> HardwareEvent | None:
        """The first event of a ``wanted`` type or a wiring fault of ``device``, else None."""
        if device in self.faults:
            return HardwareFault(device, self.faults[device])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return None
            try:
                event = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                return None
            self._note(event)
            if isinstance(event, wanted):
                return event
            if isinstance(event, HardwareFault) and event.device == device:
                return event

    def drain(self) -> None:
        """Forget events waiting to be read (faults are kept)."""
        while not self.queue.empty():
            self._note(self.queue.get_nowait())


SUPERVISION_MARGIN_S: Final = 0.25
"""Waited past ``wiring_fault_seconds`` so a fault reported on time is surely seen."""


def _supervised(hw: Hardware, role: str) -> bool:
    return getattr(hw.pins, f"{role}_supervision") is not None


def _wiring_fix(hw: Hardware, role: str) -> str:
    pin = getattr(hw.pins, role)
    check = getattr(hw.pins, f"{role}_supervision")
    pins = f"GPIO {pin}" if check is None else f"GPIO {pin} and its supervision GPIO {check}"
    contact = getattr(hw.contacts, role).value
    return (
        f"check the wires from the {role.replace('_', ' ')} to {pins} and ground (not cut, "
        f'not touching each other), and that [hardware.contacts] {role} = "{contact}" matches '
        "the switch"
    )


async def _door(
    gpio: Any,
    hw: Hardware,
    events: _Events,
    tech: Technician,
    timeout: float,
    *,
    hold: bool = True,
) -> Check:
    """Close, open, close the door; with supervision, each position is held long enough
    for a cut or shorted wire (either contact's) to be reported, and that fails the check.

    ``hold=False`` skips the holding: only for the test showing it is what catches a
    broken supervision wire.
    """
    name = "door"
    if not tech.present:
        return _skipped(name, "needs someone to open and close the door", NEEDS_A_PERSON)
    where = f"door switch (GPIO {hw.pins.door})"
    fix = _wiring_fix(hw, "door")
    settle = hw.wiring_fault_seconds + SUPERVISION_MARGIN_S if _supervised(hw, "door") else 0.0
    if not hold:
        settle = 0.0

    def wiring(event: HardwareFault) -> Check:
        return _failed(name, f"{where}: wiring fault ({event.reason})", fix)

    async def moved(wanted: type, late: str) -> Check | None:
        """None once the door reported the move asked for, else the failed check."""
        event = await events.wait_for((wanted,), timeout, "door")
        if event is None and settle:
            # Nothing moved: a wire cut or shorted all along is reported soon; name it.
            event = await events.wait_for((wanted,), settle, "door")
        if isinstance(event, HardwareFault):
            return wiring(event)
        if event is None:
            return _failed(name, f"{where} {late}", fix)
        return None

    async def held(position: str, unwanted: type) -> Check | None:
        """Keep the door where it is until the supervision has judged its wiring."""
        if not settle:
            return None
        tech.tell(f"Keep the door {position} ({settle:.1f} s).")
        event = await events.wait_for((unwanted,), settle, "door")
        if isinstance(event, HardwareFault):
            return wiring(event)
        if event is not None:
            return _failed(
                name,
                f"{where}: the door did not stay {position} for the {settle:.1f} s the wiring "
                "check needs",
                f"keep the door {position} until asked, then run the self-test again",
            )
        return None

    if gpio.door_open:
        tech.do("door", "close", "The door reads open: close the booth door.")
        failed = await moved(DoorClosed, f"reads open and never closed within {timeout:g} s")
        if failed is not None:
            return failed
    events.drain()
    if "door" in events.faults:
        return wiring(HardwareFault("door", events.faults["door"]))
    tech.do("door", "open", "Open the booth door.")
    failed = await moved(
        DoorOpened, f"did not report the door opening within {timeout:g} s"
    ) or await held("open", DoorClosed)
    if failed is not None:
        return failed
    tech.do("door", "close", "Close the booth door.")
    failed = await moved(
        DoorClosed, f"did not report the door closing within {timeout:g} s"
    ) or await held("closed", DoorOpened)
    if failed is not None:
        return failed
    checked = f"; its wiring stayed sound for {settle:.1f} s each way" if settle else ""
    return _passed(name, f"{where} reported the door opening and closing{checked}")


async def _button(
    gpio: Any, hw: Hardware, events: _Events, tech: Technician, timeout: float
) -> Check:
    name = "emergency_button"
    if not tech.present:
        return _skipped(name, "needs someone to press the button", NEEDS_A_PERSON)
    where = f"emergency button (GPIO {hw.pins.emergency_button})"
    fix = _wiring_fix(hw, "emergency_button")
    hold = hw.emergency_hold_seconds
    events.drain()
    if "emergency_button" in events.faults:
        reason = events.faults["emergency_button"]
        return _failed(name, f"{where}: wiring fault ({reason})", fix)
    tech.do(
        "emergency_button",
        "hold",
        f"Press and hold the emergency button for {hold + 1:g} seconds (the alarm will sound).",
    )
    try:
        event = await events.wait_for((EmergencyHeld,), timeout + hold, "emergency_button")
        if isinstance(event, HardwareFault):
            return _failed(name, f"{where}: wiring fault ({event.reason})", fix)
        if event is None:
            return _failed(name, f"{where} was not held for {hold:g} s within {timeout:g} s", fix)
        tech.do("emergency_button", "release", "Let go of the emergency button.")
        if await events.wait_for((EmergencyReleased,), timeout, "emergency_button") is None:
            return _failed(name, f"{where} still reads pressed {timeout:g} s after letting go", fix)
    finally:
        gpio.set_alarm(False)
    return _passed(name, f"{where} was held {hold:g} s and let go; the alarm went on")


def _light(gpio: Any, tech: Technician, name: str, pin: int) -> Check:
    if not tech.present:
        return _skipped(name, "needs someone to look at the light", NEEDS_A_PERSON)
    where = f"{name.replace('_', ' ')} (GPIO {pin})"
    try:
        if name == "occupancy_light":
            gpio.set_occupancy_light(True)
            seen = tech.confirm(name, "Is the 'in use' light outside the booth on?")
        else:
            gpio.set_alarm(True)
            seen = tech.confirm(name, "Is the alarm light on and the buzzer sounding?")
    except HardwareError as exc:
        return _failed(name, str(exc), f"check the wiring of GPIO {pin}")
    finally:
        with contextlib.suppress(HardwareError):
            gpio.set_occupancy_light(False) if name == "occupancy_light" else gpio.set_alarm(False)
    if not seen:
        return _failed(
            name,
            f"{where} was switched on and not seen",
            f"check the bulb or LED, its power and the wire to GPIO {pin}",
        )
    return _passed(name, f"{where} was switched on and seen")


async def gpio_checks(
    hw: Hardware,
    tech: Technician,
    timeout: float,
    pin_factory: Any | None = None,
    *,
    hold_door: bool = True,
) -> list[Check]:
    """Door, emergency button and both lights, through the booth's own ``BoothGpio``.

    ``hold_door=False`` only for the test of what holding the door finds.
    """
    from hardware.gpio import BoothGpio

    loop = asyncio.get_running_loop()
    events = _Events()
    gpio = BoothGpio(hw, events.put, loop, pin_factory=pin_factory)
    names = ("door", "emergency_button", "occupancy_light", "alarm_light")
    try:
        gpio.start()
    except HardwareError as exc:
        return [_failed(n, f"GPIO could not be opened: {exc}", "see the message") for n in names]
    try:
        return [
            await _door(gpio, hw, events, tech, timeout, hold=hold_door),
            await _button(gpio, hw, events, tech, timeout),
            await asyncio.to_thread(_light, gpio, tech, "occupancy_light", hw.pins.occupancy_light),
            await asyncio.to_thread(_light, gpio, tech, "alarm_light", hw.pins.alarm_light),
        ]
    finally:
        gpio.close()


# ---------------------------------------------------------------- hub and ICE servers


def check_hub(hub: Hub, timeout: float = NETWORK_TIMEOUT_S) -> Check:
    """A TLS connection to the hub whose certificate matches the pin, as the booth demands."""
    name = "hub"
    parts = urlsplit(hub.url)
    host = parts.hostname or ""
    port = parts.port or 443
    where = f"hub {host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        return _failed(
            name,
            f"{where}: the name does not resolve",
            "check DNS (`kiosk-provision network status`) and [hub] url",
        )
    except TimeoutError:
        return _failed(
            name,
            f"{where}: no answer within {timeout:g} s",
            "check the site's firewall lets the booth out to the hub's port",
        )
    except ConnectionRefusedError:
        return _failed(
            name,
            f"{where}: connection refused",
            "check the hub is running and the port in [hub] url",
        )
    except OSError as exc:
        return _failed(
            name,
            f"{where}: cannot connect ({exc.strerror or exc})",
            "check the network (`kiosk-provision network status`)",
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin is the check, whatever CA signed it
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.settimeout(timeout)
            der = tls.getpeercert(binary_form=True)
    except (ssl.SSLError, OSError) as exc:
        sock.close()
        return _failed(
            name,
            f"{where}: the TLS handshake failed ({exc})",
            "check [hub] url names the hub's TLS port",
        )
    if der is None:
        return _failed(name, f"{where}: sent no certificate", "check [hub] url")
    got = hashlib.sha256(der).hexdigest()
    if got != hub.certificate_sha256:
        return _failed(
            name,
            f"{where} answers, but its certificate's SHA-256 is {got}, not the "
            f"{hub.certificate_sha256} in [hub] certificate_sha256",
            "if the hub's certificate was renewed, put its new fingerprint in [hub] "
            "certificate_sha256; otherwise this is not the clinic's hub: check [hub] url",
        )
    return _passed(name, f"{where}: TLS connects and the certificate matches the pin")


STUN_MAGIC: Final = 0x2112A442
_BINDING, _ALLOCATE = 0x0001, 0x0003
_ICE_URL = re.compile(
    r"(?P<scheme>stun|turn|turns):(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:?\[\]]+))"
    r"(?::(?P<port>\d+))?(?:\?transport=(?P<transport>udp|tcp))?"
)


@dataclass(frozen=True)
class IceTarget:
    scheme: str
    host: str
    port: int
    transport: str

    @classmethod
    def parse(cls, url: str) -> IceTarget:
        m = _ICE_URL.fullmatch(url)
        if m is None:
            raise ValueError(f"not a stun:/turn:/turns: address: {url!r}")
        scheme = m["scheme"]
        transport = "tcp" if scheme == "turns" else (m["transport"] or "udp")
        port = int(m["port"]) if m["port"] else (5349 if scheme == "turns" else 3478)
        return cls(scheme, m["v6"] or m["host"], port, transport)


def stun_request(method: int, transaction: bytes) -> bytes:
    """A STUN request (RFC 8489); an Allocate carries REQUESTED-TRANSPORT = UDP."""
    attrs = b""
    if method == _ALLOCATE:
        attrs = (0x0019).to_bytes(2) + (4).to_bytes(2) + bytes([17, 0, 0, 0])
    return (
        method.to_bytes(2) + len(attrs).to_bytes(2) + STUN_MAGIC.to_bytes(4) + transaction + attrs
    )


def _error_code(reply: bytes) -> int | None:
    """The ERROR-CODE attribute of a STUN error response (e.g. 401), or None."""
    offset = 20
    while offset + 4 <= len(reply):
        kind = int.from_bytes(reply[offset : offset + 2])
        size = int.from_bytes(reply[offset + 2 : offset + 4])
        value = reply[offset + 4 : offset + 4 + size]
        if kind == 0x0009 and len(value) >= 4:
            return (value[2] & 0x7) * 100 + value[3]
        offset += 4 + size + (-size % 4)
    return None


def _exchange(target: IceTarget, request: bytes, timeout: float) -> bytes | None:
    """Send one STUN request and return the reply with the same transaction id, or None."""
    infos = socket.getaddrinfo(
        target.host,
        target.port,
        0,
        socket.SOCK_DGRAM if target.transport == "udp" else socket.SOCK_STREAM,
    )
    family, kind, proto, _, address = infos[0]
    if target.transport == "udp":
        with socket.socket(family, kind, proto) as sock:
            wait = timeout / 4
            for _ in range(3):  # UDP may lose a packet: retry, doubling the wait
                sock.settimeout(wait)
                sock.sendto(request, address)
                try:
                    while True:
                        reply = sock.recv(2048)
                        if reply[8:20] == request[8:20]:
                            return reply
                except TimeoutError:
                    wait *= 1.5
            return None
    with socket.create_connection((str(address[0]), int(address[1])), timeout=timeout) as raw:
        stream: socket.socket = raw
        if target.scheme == "turns":
            stream = ssl.create_default_context().wrap_socket(raw, server_hostname=target.host)
        stream.sendall(request)
        header = _recv_exactly(stream, 20)
        body = _recv_exactly(stream, int.from_bytes(header[2:4]))
        return header + body


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed before a whole STUN message arrived")
        data += chunk
    return data


def check_ice_server(url: str, timeout: float = NETWORK_TIMEOUT_S) -> Check:
    """STUN Binding to every ICE server; a TURN server must also answer an Allocate.

    An Allocate without credentials is answered 401 by a working TURN server:
    that proves it is a TURN server without needing the short-lived
    credentials the booth only gets from the hub during a call.
    """
    try:
        target = IceTarget.parse(url)
    except ValueError as exc:
        return _failed("ice_server", str(exc), "fix [[ice_servers]] urls")
    name = target.scheme
    where = f"{url} ({target.transport.upper()} {target.host}:{target.port})"
    fix = (
        f"check the server runs and the site's firewall lets the booth out to "
        f"{target.transport.upper()} port {target.port}"
    )
    try:
        reply = _exchange(target, stun_request(_BINDING, os.urandom(12)), timeout)
        if reply is None or reply[:2] != (0x0101).to_bytes(2):
            return _failed(name, f"{where}: no answer to a STUN Binding request", fix)
        if target.scheme == "stun":
            return _passed(name, f"{where}: answers STUN Binding")
        reply = _exchange(target, stun_request(_ALLOCATE, os.urandom(12)), timeout)
    except socket.gaierror:
        return _failed(
            name,
            f"{where}: the name does not resolve",
            "check DNS (`kiosk-provision network status`) and [[ice_servers]] urls",
        )
    except ssl.SSLError as exc:
        return _failed(
            name,
            f"{where}: TLS failed ({exc.reason})",
            "check the TURN server's certificate is valid for its name",
        )
    except OSError as exc:
        return _failed(name, f"{where}: cannot connect ({exc.strerror or exc})", fix)
    if reply is None:
        return _failed(
            name,
            f"{where}: answers STUN but not a TURN Allocate request",
            "is this a TURN server? check [[ice_servers]] urls",
        )
    if reply[:2] == (0x0103).to_bytes(2):
        return _passed(
            name,
            f"{where}: answers STUN and allocates a relay without credentials "
            "(an open relay: the hub admin should turn on authentication)",
        )
    if reply[:2] == (0x0113).to_bytes(2) and _error_code(reply) == 401:
        return _passed(
            name,
            f"{where}: answers STUN Binding and TURN Allocate "
            "(asks for the credentials the hub gives each call)",
        )
    return _failed(
        name,
        f"{where}: refused a TURN Allocate (error {_error_code(reply)})",
        "check the TURN server's configuration",
    )


def check_ice_servers(
    servers: Sequence[IceServer], timeout: float = NETWORK_TIMEOUT_S
) -> list[Check]:
    if not servers:
        return [
            _skipped(
                "turn",
                "no [[ice_servers]] configured: calls work only where booth "
                "and clinician reach each other directly",
                "add the clinic's TURN server as [[ice_servers]] in the booth file",
            )
        ]
    return [check_ice_server(url, timeout) for server in servers for url in server.urls]


# ---------------------------------------------------------------- the machine

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a short probe; FileNotFoundError when the program is not installed."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)


_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


def kernel_clock_synchronised() -> bool | None:
    """adjtimex(2) read-only: whether the kernel believes its clock is synchronised."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        buffer = ctypes.create_string_buffer(512)  # struct timex, modes = 0: only read
        state = int(libc.adjtimex(buffer))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR


def check_clock(run: Run = run_command) -> Check:
    name = "clock"
    fix = (
        "the booth needs network time: check `timedatectl timesync-status` and that the "
        "site's firewall lets out UDP port 123 (NTP)"
    )
    try:
        result = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
        answer = result.stdout.strip() if result.returncode == 0 else None
    except (FileNotFoundError, subprocess.TimeoutExpired):
        answer = None
    if answer == "yes":
        return _passed(name, "synchronised (timedatectl: NTPSynchronized=yes)")
    if answer == "no":
        return _failed(name, "not synchronised (timedatectl: NTPSynchronized=no)", fix)
    synced = kernel_clock_synchronised()
    if synced is None:
        return _skipped(
            name, "could not be read (no timedatectl, adjtimex failed)", "run on the booth itself"
        )
    if synced:
        return _passed(name, "synchronised (kernel adjtimex; timedatectl unavailable)")
    return _failed(name, "not synchronised (kernel adjtimex; timedatectl unavailable)", fix)


def check_disk(path: Path, min_free: int = MIN_FREE_BYTES) -> Check:
    name = "disk"
    try:
        usage = shutil.disk_usage(path)
    except OSError as exc:
        return _skipped(name, f"{path}: cannot be measured ({exc.strerror})", "run on the booth")
    free_mb, need_mb = usage.free // 2**20, min_free // 2**20
    detail = f"{free_mb} MB free of {usage.total // 2**20} MB on {path}"
    if usage.free < min_free:
        return _failed(
            name,
            f"{detail}; at least {need_mb} MB is needed for updates",
            "use a bigger SD card, or remove old files (`journalctl --vacuum-size`)",
        )
    return _passed(name, detail)


THROTTLE_BITS: Final = {
    0: "under-voltage now",
    16: "under-voltage since boot",
    1: "CPU frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    17: "CPU frequency capped since boot",
    18: "throttled since boot",
    19: "soft temperature limit since boot",
}
_POWER_BITS = (0, 16)


def is_raspberry_pi(root: Path) -> bool:
    from hardware.camera import read_model

    model = read_model(root / "proc/device-tree/model")
    return model is not None and "Raspberry Pi" in model


def check_throttling(root: Path, run: Run = run_command) -> list[Check]:
    """``vcgencmd get_throttled``: under-voltage and throttling, now and since boot."""
    names = ("power", "throttling")
    if not is_raspberry_pi(root):
        return [
            _skipped(
                n,
                "not a Raspberry Pi: skipped (the firmware flags exist only there)",
                "run on the booth itself",
            )
            for n in names
        ]
    try:
        result = run(["vcgencmd", "get_throttled"])
    except (FileNotFoundError, subprocess.TimeoutExpired):
        result = None
    m = re.fullmatch(r"throttled=0x([0-9a-fA-F]+)", result.stdout.strip()) if result else None
    if result is None or result.returncode != 0 or m is None:
        return [
            _skipped(
                n,
                "vcgencmd get_throttled gave no answer",
                "install raspi-utils (vcgencmd) and run as a user in the video group",
            )
            for n in names
        ]
    bits = int(m[1], 16)
    power = [text for bit, text in THROTTLE_BITS.items() if bit in _POWER_BITS and bits >> bit & 1]
    heat = [
        text for bit, text in THROTTLE_BITS.items() if bit not in _POWER_BITS and bits >> bit & 1
    ]
    raw = f"vcgencmd: throttled=0x{bits:x}"
    return [
        _failed(
            "power",
            f"{', '.join(power)} ({raw})",
            "use the official Raspberry Pi power supply (5.1 V, 3 A for a Pi 4, 5 A for a "
            "Pi 5) and a short, thick cable",
        )
        if power
        else _passed("power", f"no under-voltage ({raw})"),
        _failed(
            "throttling",
            f"{', '.join(heat)} ({raw})",
            "give the Pi air: a heatsink or fan, and vents in the booth's enclosure",
        )
        if heat
        else _passed("throttling", f"never throttled since boot ({raw})"),
    ]


def check_temperature(root: Path, hot: float = HOT_C) -> Check:
    name = "temperature"
    readings: list[tuple[float, str]] = []
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        try:
            millideg = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        kind = ""
        with contextlib.suppress(OSError):
            kind = (zone / "type").read_text().strip()
        readings.append((millideg / 1000.0, kind or zone.name))
    if not readings:
        return _skipped(
            name, "no /sys/class/thermal zone to read: not measured", "run on the booth itself"
        )
    celsius, where = max(readings)
    detail = f"{celsius:.1f} °C ({where})"
    if celsius >= hot:
        return _failed(
            name,
            f"{detail}: {hot:g} °C or more, the Pi slows down",
            "give the Pi air: a heatsink or fan, and vents in the booth's enclosure",
        )
    return _passed(name, detail)


# ---------------------------------------------------------------- running it all


@dataclass
class Devices:
    """The booth's camera, microphone, speaker and GPIO pin factory (None: gpiozero's own)."""

    camera: Camera | None
    microphone: Microphone
    speaker: Speaker
    pin_factory: Any | None = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)


def simulated_devices(
    config: BoothConfig,
    script: Mapping[str, str] | None = None,
    write: Callable[[str], Any] | None = None,
) -> tuple[Devices, SimulatedTechnician]:
    """The simulated twins and a technician whose hands and eyes are on them."""
    from hardware.audio import SimulatedMicrophone, SimulatedSpeaker
    from hardware.camera import TestCard
    from hardware.gpio import make_mock_factory

    hw = config.hardware
    factory = make_mock_factory(hw)
    speaker = SimulatedSpeaker()
    devices = Devices(TestCard(), SimulatedMicrophone(), speaker, factory, [factory.close])
    return devices, simulated_technician(devices, hw, script, write)


def simulated_technician(
    devices: Devices,
    hw: Hardware,
    script: Mapping[str, str] | None = None,
    write: Callable[[str], Any] | None = None,
    wiring: SimulatedWiringLike | None = None,
) -> SimulatedTechnician:
    """A technician for ``devices``' simulated pins and speaker (which must be simulated).

    ``wiring``: hands other than a plain ``SimulatedWiring`` on those pins (a test's
    switch with a fault of its own)."""
    from hardware.gpio import SimulatedWiring

    factory = devices.pin_factory
    if factory is None:
        raise ValueError("a simulated technician needs the simulated pins (a MockFactory)")
    speaker = devices.speaker

    def lit(pin: int) -> Callable[[], bool]:
        return lambda: bool(factory.pin(pin).state)

    def sounded() -> bool:
        pin = factory.pin(hw.pins.buzzer)
        return any(bool(s.state) for s in pin.states)

    senses = {
        "speaker": lambda: getattr(speaker, "loud_samples", 0) > 0,
        "occupancy_light": lit(hw.pins.occupancy_light),
        "alarm_light": lambda: lit(hw.pins.alarm_light)() and sounded(),
    }
    hands = wiring if wiring is not None else SimulatedWiring(factory, hw)
    return SimulatedTechnician(hands, senses, script, write)


def booth_devices(config: BoothConfig) -> Devices:
    """The real camera, microphone (arecord), speaker (aplay/pw-play) and GPIO."""
    from hardware.audio import PipeSpeaker
    from hardware.camera import make_camera

    try:
        camera = make_camera(config.hardware.camera.value)
    except Exception:
        camera = None
    return Devices(camera, RecordingMicrophone(), PipeSpeaker())


def run_selftest(
    config: BoothConfig,
    devices: Devices,
    tech: Technician,
    *,
    root: Path = Path("/"),
    timeout: float = TIMEOUT_S,
    run: Run = run_command,
    on_check: Callable[[Check], None] | None = None,
    min_free: int = MIN_FREE_BYTES,
    network_timeout: float = NETWORK_TIMEOUT_S,
) -> Report:
    """Every check in turn; ``on_check`` sees each as it finishes (the progress)."""
    checks: list[Check] = []

    def add(*found: Check) -> None:
        for check in found:
            checks.append(check)
            if on_check is not None:
                on_check(check)

    try:
        add(check_camera(devices.camera, choice=config.hardware.camera.value))
        add(check_microphone(devices.microphone, tech))
        add(check_speaker(devices.speaker, tech))
        add(*asyncio.run(gpio_checks(config.hardware, tech, timeout, devices.pin_factory)))
        add(check_hub(config.hub, network_timeout))
        add(*check_ice_servers(config.ice_servers, network_timeout))
        add(check_clock(run))
        disk = root / "var/lib"
        add(check_disk(disk if disk.is_dir() else root, min_free))
        add(*check_throttling(root, run))
        add(check_temperature(root))
    finally:
        tech.close()
        for cleanup in devices.cleanup:
            with contextlib.suppress(Exception):
                cleanup()
    return Report(tuple(checks))


def report_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False)


# ---------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="check the simulated twins instead of the booth's hardware",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    who = parser.add_mutually_exclusive_group()
    who.add_argument(
        "--interactive",
        dest="interactive",
        action="store_true",
        default=None,
        help="a technician is at the booth to answer (default when on a terminal)",
    )
    who.add_argument(
        "--no-prompt",
        dest="interactive",
        action="store_false",
        help="nobody to answer: checks that need a person are skipped",
    )
    parser.add_argument(
        "--script",
        type=Path,
        metavar="FILE",
        help="with --simulate: a TOML file of the simulated technician's "
        'answers, e.g. door = "ignore" or speaker = "no"',
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long to wait for the door and button (default {TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="the booth configuration (default: the installed one)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("/"),
        metavar="DIR",
        help="the booth's file system root (for tests)",
    )


def command(args: argparse.Namespace) -> int:
    """``kiosk-provision selftest``: the report on stdout, instructions on stderr."""
    from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, err
    from kiosk.config import load, problem_report
    from kiosk.errors import ConfigError
    from provisioning.layout import Layout

    if args.script is not None and not args.simulate:
        err(
            "kiosk-provision selftest: --script answers for the simulated technician; "
            "add --simulate, or drop --script to answer yourself"
        )
        return EXIT_USAGE
    if not args.timeout > 0:
        err(f"kiosk-provision selftest: --timeout must be more than 0, not {args.timeout:g}")
        return EXIT_USAGE
    path = args.config or Layout(args.root).config
    try:
        config = load(path)
    except ConfigError as exc:
        for line in problem_report(exc):
            err(line)
        return EXIT_PROBLEMS
    script = load_script(args.script) if args.script is not None else None
    interactive = args.interactive
    tech: Technician
    if args.simulate:
        devices, simulated = simulated_devices(config, script, sys.stderr.write)
        tech = simulated if interactive is not False else Nobody()
    else:
        devices = booth_devices(config)
        if interactive is None:
            interactive = sys.stdin.isatty()
        tech = TerminalTechnician() if interactive else Nobody()

    def progress(check: Check) -> None:
        if not args.json:
            print(check.line(), flush=True)

    report = run_selftest(
        config, devices, tech, root=args.root, timeout=args.timeout, on_check=progress
    )
    if args.json:
        print(report_json(report))
    else:
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_PROBLEMS

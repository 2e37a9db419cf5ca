"""The headless simulator: commands in on stdin, one JSON object per line out.

Commands drive the simulated hardware the same way a resident would drive
the real one: ``door open`` lets go of the reed switch on a mock GPIO pin,
``emergency press`` pulls the button's pin, so the real gpiozero code, the
debounce and the hold timer all run. See ``docs/simulator.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from hardware.audio import SimulatedSpeaker, Speaker
from hardware.events import DeviceKind
from kiosk import logs
from kiosk.app import BoothRuntime
from kiosk.call.engine import CallEngine
from kiosk.controller import Controller
from kiosk.session import (
    Booth,
    CallEnded,
    ClinicianAnswered,
    CodeRefused,
    Effect,
    EmergencyCleared,
    Intent,
    NetworkLost,
    NetworkRestored,
    TechnicianUnlocked,
    Touch,
)

MAX_LINE = 200
MAX_WAIT = 3600.0
WIRED_ROLES = ("door", "emergency_button")
FAILING_DEVICES = ("camera", "microphone")

HELP: dict[str, str] = {
    "door": "door open | door close",
    "emergency": "emergency press | emergency release",
    "touch": "touch INTENT [VALUE]   intents: " + ", ".join(i.value for i in Intent),
    "net": "net down | net up",
    "device": "device add KIND | device remove KIND   kinds: "
    + ", ".join(k.value for k in DeviceKind)
    + "   |   device fail camera|microphone | device fix camera|microphone "
    "(frozen picture, digital silence)",
    "wire": "wire cut ROLE | wire short ROLE | wire repair ROLE   roles: " + ", ".join(WIRED_ROLES),
    "hub": "hub answer | hub end | hub refuse   (the clinic hub's side of a visit)",
    "staff": "staff clear   (staff cleared the emergency)",
    "technician": "technician   (a technician unlocked technician mode)",
    "state": "state   (print the current state)",
    "call": "call   (print the call engine's status: needs [hub] credential_file)",
    "wait": "wait SECONDS",
    "quit": "quit",
}


class CommandError(Exception):
    """A command line that cannot be carried out; ``reason`` is a fixed word for the log."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Command:
    verb: str
    args: tuple[str, ...]


def _one_of(value: str, options: tuple[str, ...], what: str) -> str:
    if value not in options:
        raise CommandError(
            "bad_argument", f"{what} must be one of {', '.join(options)}, not {value!r}"
        )
    return value


def parse(line: str) -> Command | None:
    """Parse one line; blank lines and ``#`` comments give None."""
    if len(line) > MAX_LINE:
        raise CommandError("too_long", f"line is longer than {MAX_LINE} characters")
    words = line.split("#", 1)[0].split()
    if not words:
        return None
    verb, args = words[0].lower(), tuple(words[1:])
    arity = {
        "door": (1, 1),
        "emergency": (1, 1),
        "touch": (1, 2),
        "net": (1, 1),
        "device": (2, 2),
        "wire": (2, 2),
        "hub": (1, 1),
        "staff": (1, 1),
        "technician": (0, 0),
        "state": (0, 0),
        "call": (0, 0),
        "wait": (1, 1),
        "quit": (0, 0),
    }
    if verb not in arity:
        shown = verb if len(verb) <= 20 else verb[:20] + "…"
        raise CommandError(
            "unknown_command", f"unknown command {shown!r}; commands: {', '.join(arity)}"
        )
    lo, hi = arity[verb]
    if not lo <= len(args) <= hi:
        raise CommandError("bad_argument", f"usage: {HELP[verb]}")
    a = tuple(x.lower() for x in args[:1]) + args[1:]
    match verb:
        case "door":
            _one_of(a[0], ("open", "close"), "door")
        case "emergency":
            _one_of(a[0], ("press", "release"), "emergency")
        case "touch":
            _one_of(a[0], tuple(i.value for i in Intent), "intent")
        case "net":
            _one_of(a[0], ("down", "up"), "net")
        case "device":
            _one_of(a[0], ("add", "remove", "fail", "fix"), "device")
            if a[0] in ("fail", "fix"):
                _one_of(a[1].lower(), FAILING_DEVICES, "device that can fail")
            else:
                _one_of(a[1].lower(), tuple(k.value for k in DeviceKind), "device kind")
            a = (a[0], a[1].lower())
        case "wire":
            _one_of(a[0], ("cut", "short", "repair"), "wire")
            _one_of(a[1].lower(), WIRED_ROLES, "wire role")
            a = (a[0], a[1].lower())
        case "hub":
            _one_of(a[0], ("answer", "end", "refuse"), "hub")
        case "staff":
            _one_of(a[0], ("clear",), "staff")
        case "wait":
            try:
                seconds = float(a[0])
            except ValueError:
                raise CommandError("bad_argument", f"wait takes seconds, not {a[0]!r}") from None
            if not 0 <= seconds <= MAX_WAIT:
                raise CommandError("bad_argument", f"wait takes 0-{MAX_WAIT:g} seconds")
    return Command(verb, a)


class Printer:
    """Writes the booth's story as JSON lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def emit(self, obj: dict[str, object]) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def on_step(self, before: Booth, after: Booth, effects: list[Effect]) -> None:
        """The state change first, then what the booth did about it (already done)."""
        if after.state is not before.state:
            self.emit({"type": "state", "state": after.state.value, "previous": before.state.value})
        for effect in effects:
            self.emit({"type": "effect", **effect.describe()})


class Simulator:
    """Carries out parsed commands against a running simulated booth."""

    def __init__(self, runtime: BoothRuntime, printer: Printer) -> None:
        assert runtime.simulation is not None and runtime.controller is not None
        self.runtime = runtime
        self.sim = runtime.simulation
        self.controller: Controller = runtime.controller
        self.printer = printer
        self.number = 0
        """The number of the line being carried out (for ``error`` lines)."""

    def _audio(self) -> dict[str, object] | None:
        """Where the call audio and prompts go now (a headset takes them)."""
        route = self.runtime.route
        if route is None:
            return None
        speaker = self.runtime.speaker
        return {
            "speaker": route.speaker,
            "microphone": route.microphone,
            "headset": route.headset,
            "max_volume": route.max_volume,
            "volume": speaker.volume if isinstance(speaker, SimulatedSpeaker) else None,
        }

    def _device(self, action: str, kind: str) -> None:
        """Hot-plug through udev, the camera's USB socket included; or a device that fails."""
        sim = self.sim
        if action in {"fail", "fix"}:
            if kind == "camera":
                sim.camera.frozen = action == "fail"
            else:
                sim.microphone.dead = action == "fail"
            return
        if kind == DeviceKind.CAMERA.value:
            sim.camera.unplug() if action == "remove" else sim.camera.plug()
        sim.monitor.trigger_kind(action, DeviceKind(kind))

    async def execute(self, cmd: Command) -> bool:
        """Carry out one command; False means quit."""
        c, w, a = self.controller, self.sim.wiring, cmd.args
        actions: dict[tuple[str, ...], Callable[[], object]] = {
            ("door", "open"): w.open_door,
            ("door", "close"): w.close_door,
            ("emergency", "press"): w.press_emergency,
            ("emergency", "release"): w.release_emergency,
            ("net", "down"): lambda: c.post(NetworkLost()),
            ("net", "up"): lambda: c.post(NetworkRestored()),
            ("hub", "answer"): lambda: c.post(ClinicianAnswered()),
            ("hub", "end"): lambda: c.post(CallEnded()),
            ("hub", "refuse"): lambda: c.post(CodeRefused()),
            ("staff", "clear"): lambda: c.post(EmergencyCleared()),
        }
        key = (cmd.verb, *a[:1])
        if key in actions:
            actions[key]()
        elif cmd.verb == "touch":
            c.post(Touch(Intent(a[0]), a[1] if len(a) > 1 else ""))
        elif cmd.verb == "device":
            self._device(a[0], a[1])
        elif cmd.verb == "wire":
            {"cut": w.cut, "short": w.short, "repair": w.repair}[a[0]](a[1])
        elif cmd.verb == "technician":
            c.post(TechnicianUnlocked())
        elif cmd.verb == "state":
            self.printer.emit({**_describe(c.booth), "audio": self._audio()})
        elif cmd.verb == "call":
            if self.runtime.call is None:
                self.printer.emit(
                    {
                        "type": "error",
                        "line": self.number,
                        "error": "call: this booth has no hub credential "
                        "([hub] credential_file), so it has no call engine",
                    }
                )
            else:
                self.printer.emit(describe_call(self.runtime.call.engine, self.runtime.speaker))
        elif cmd.verb == "wait":
            await asyncio.sleep(float(a[0]))
        elif cmd.verb == "quit":
            return False
        await asyncio.sleep(0)
        await c.settle()
        return True


def _describe(b: Booth) -> dict[str, object]:
    return {
        "type": "status",
        "state": b.state.value,
        "visit_state": b.visit_state.value,
        "language": b.language,
        "door_open": b.door_open,
        "emergency": b.emergency,
        "network_up": b.network_up,
        "faults": sorted(b.faults),
        "missing": sorted(k.value for k in b.missing),
        "broken": sorted(k.value for k in b.broken),
        "headset": b.headset,
        "message": b.message.value if b.message else None,
    }


def describe_call(engine: CallEngine, speaker: Speaker | None = None) -> dict[str, object]:
    """The ``call`` line: the call engine's view of the call, and what came from the clinician.

    The counters run over every call since the booth started; compare two
    lines to see whether media is flowing now.
    """
    frame = engine.remote_frame()
    return {
        "type": "call",
        "status": engine.status.value,
        "call_id": engine.call_id,
        "offers": engine.offers,
        "failures": engine.failures,
        "video_frames": engine.video_frames_received,
        "audio_frames": engine.audio_frames_received,
        "audio_samples": speaker.samples if isinstance(speaker, SimulatedSpeaker) else None,
        "remote_video": frame is not None,
        "remote_size": [frame.width, frame.height] if frame is not None else None,
        "clinician_state": {
            "muted": engine.clinician_state.muted,
            "camera_off": engine.clinician_state.camera_off,
        },
    }


def stdin_lines(
    loop: asyncio.AbstractEventLoop, source: TextIO | None = None
) -> asyncio.Queue[str | None]:
    """Read lines on a thread (stdin may be a file, a pipe or a terminal); None marks the end."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    stream = source or sys.stdin

    def reader() -> None:
        try:
            for line in stream:
                loop.call_soon_threadsafe(queue.put_nowait, line)
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    return queue


async def run(runtime: BoothRuntime, lines: asyncio.Queue[str | None], out: TextIO) -> None:
    """Run commands until ``quit``, end of input or a stop signal."""
    printer = Printer(out)
    controller = runtime.controller
    assert controller is not None
    controller.step_listeners.append(printer.on_step)
    printer.emit({"type": "ready", "state": controller.booth.state.value})
    sim = Simulator(runtime, printer)
    stop = asyncio.ensure_future(runtime.wait_stopped())
    number = 0
    try:
        while True:
            get = asyncio.ensure_future(lines.get())
            done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
            if get not in done:
                get.cancel()
                break
            line = get.result()
            if line is None:
                break
            number += 1
            sim.number = number
            try:
                cmd = parse(line)
            except CommandError as exc:
                logs.log_event("command_rejected", reason=exc.reason)
                printer.emit({"type": "error", "line": number, "error": str(exc)})
                continue
            if cmd is None:
                continue
            if not await sim.execute(cmd):
                break
    finally:
        stop.cancel()

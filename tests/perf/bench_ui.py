"""The touchscreen's cost at rest and its speed under a finger.

Targets from the issue: idle CPU on the attract screen at most 1 % of one core
on this x86 machine (Kivy wakes ``maxfps`` times a second even when nothing
changes, so ``[display] maxfps`` sets the cost), and touch-to-next-screen
latency, reported.

**Idle CPU.** The real booth runs as a separate process exactly as a booth
runs it: ``python -m kiosk --simulate --config <examples/demo-booth.toml with
only [display] maxfps changed>``, its window on an ``Xvfb`` started here
(``SDL_VIDEODRIVER`` removed), ``READY=1`` read from a ``NOTIFY_SOCKET`` bound
here, and ``WATCHDOG_USEC`` set as systemd sets it for ``WatchdogSec=20``.
After ``READY=1`` and 3 s of settling, the process's CPU time (utime + stime
of all its threads, ``/proc/PID/stat``) is read across 10 s on the attract
screen and given as % of one core; beside it the process's context switches a
second (all threads, ``/proc/PID/task/*/status``: roughly its wake-ups) and
Xvfb's own CPU over the same 10 s. ``/proc/PID/stat`` counts 10 ms clock
ticks, so each figure is good to about 0.1 %; runs differ by about 0.2 %.

**Touch to next screen.** In this process, with the booth and its window
offscreen (``tests/kiosk/ui/harness.py``), a visit is walked again and again:
attract ``start`` -> notice ``accept`` -> check_in ``walk_in`` -> device_check
``cancel`` -> wiping -> attract. Each tap is a real SDL mouse-button down and
up pushed onto SDL's event queue (``SDL_PushEvent``), so it takes the path a
finger on the panel takes inside the booth: SDL's queue, its read at the
start of a frame's input step (the app's ``_ReadInputFirst``; Kivy alone reads
it only after drawing, a frame later), Kivy's mouse provider, the button's
``on_release``, the controller's step on the loop, the app's rebuild of the
widgets, and Kivy's next frame. The finger is lifted ~0.1 s after it touched,
at a random moment between frames.

Measured, per tap: from pushing the button-*up* event to the return of the
window's buffer swap (``Window.flip``: ``SDL_GL_SwapWindow``) of the first
frame drawn after the controller announced the new state. The benchmark's
state listener runs after the app's, which has already rebuilt the widgets,
and Kivy lays out and renders text before it draws, so that frame shows the
whole new screen (for ``cancel`` the wiping screen, or attract when wiping
ended before the frame). Not included: the touch controller, the kernel and
the X server before the event reaches SDL, and the panel's scan-out after the
swap. The two parts are also given: up-event to the state change, and state
change to the swap. Kivy reads input and draws once per ``1 / maxfps``, so
the walk is repeated with the clock's ``maxfps`` set to each value measured
idle.

Benchmarks print; they never assert timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk import config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "demo-booth.toml"
SHIPPED_MAXFPS = config.Display().maxfps  # a booth.toml without maxfps gets this
MAXFPS = tuple(sorted({10, 20, 30, SHIPPED_MAXFPS}))
SETTLE_S = 3.0
IDLE_S = 10.0
TARGET_PCT = 1.0
TICK = os.sysconf("SC_CLK_TCK")
WALK = ("start", "accept", "walk_in", "cancel")
SHIPPED_WALKS = 20  # walks at the shipped maxfps, four taps each
OTHER_WALKS = 8  # walks at each other maxfps


# ---------------------------------------------------------------- idle CPU


def _cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 in proc(5)


def _switches(pid: int) -> int:
    """Context switches of every thread of ``pid`` so far: roughly, its wake-ups."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    return total


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _xvfb() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fresh X server on a free display (it writes the number on ``-displayfd``)."""
    read, write = os.pipe()
    try:
        proc = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)
    try:
        with os.fdopen(read) as f:
            number = f.readline().strip()  # empty if Xvfb exits first
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}", proc
    finally:
        _stop(proc)


def _wait_ready(sock: socket.socket, booth: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if booth.poll() is not None:
            raise RuntimeError(f"the booth exited ({booth.returncode}) before READY=1")
        sock.settimeout(0.2)
        try:
            if "READY=1" in sock.recv(4096).decode().split("\n"):
                return
        except TimeoutError:
            continue
    raise RuntimeError(f"no READY=1 from the booth within {seconds:.0f} s")


@dataclass(frozen=True)
class Idle:
    maxfps: int
    booth_pct: float
    wakeups: float
    xvfb_pct: float


def _idle(display: str, xvfb: subprocess.Popen[bytes], maxfps: int, tmp: Path) -> Idle:
    text, n = re.subn(r"(?m)^maxfps = \d+$", f"maxfps = {maxfps}", CONFIG.read_text())
    if n != 1:
        raise RuntimeError(f"{CONFIG} has no single 'maxfps = N' line")
    cfg = tmp / f"booth-maxfps-{maxfps}.toml"
    cfg.write_text(text)
    notify = tmp / f"notify-{maxfps}"
    env = {
        **os.environ,
        "DISPLAY": display,
        "NOTIFY_SOCKET": str(notify),
        "KIVY_HOME": str(tmp / f"kivy-{maxfps}"),
        "WATCHDOG_USEC": "20000000",  # systemd/telehealth-kiosk.service: WatchdogSec=20
    }
    for name in ("SDL_VIDEODRIVER", "WATCHDOG_PID"):
        env.pop(name, None)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        booth = subprocess.Popen(
            [sys.executable, "-m", "kiosk", "--simulate", "--config", str(cfg)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(sock, booth, 30)
            time.sleep(SETTLE_S)
            t0, b0, s0, x0 = (
                time.monotonic(),
                _cpu_seconds(booth.pid),
                _switches(booth.pid),
                _cpu_seconds(xvfb.pid),
            )
            time.sleep(IDLE_S)
            t1, b1, s1, x1 = (
                time.monotonic(),
                _cpu_seconds(booth.pid),
                _switches(booth.pid),
                _cpu_seconds(xvfb.pid),
            )
            if booth.poll() is not None:
                raise RuntimeError(f"the booth exited ({booth.returncode}) while idle")
        finally:
            _stop(booth)
    wall = t1 - t0
    return Idle(maxfps, 100 * (b1 - b0) / wall, (s1 - s0) / wall, 100 * (x1 - x0) / wall)


def idle_cpu() -> list[Idle]:
    """Idle CPU of a booth process on the attract screen, once per maxfps."""
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as d, _xvfb() as (display, xvfb):
        return [_idle(display, xvfb, fps, Path(d)) for fps in MAXFPS]


# ---------------------------------------------------------------- touch latency

_SDL_MOUSEBUTTONDOWN = 0x401
_SDL_MOUSEBUTTONUP = 0x402
_SDL_BUTTON_LEFT = 1


class _SdlMouseButton(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_uint32),
        ("timestamp", ctypes.c_uint32),
        ("windowID", ctypes.c_uint32),
        ("which", ctypes.c_uint32),
        ("button", ctypes.c_uint8),
        ("state", ctypes.c_uint8),
        ("clicks", ctypes.c_uint8),
        ("padding1", ctypes.c_uint8),
        ("x", ctypes.c_int32),
        ("y", ctypes.c_int32),
    )


class _SdlEvent(ctypes.Union):
    _fields_ = (("button", _SdlMouseButton), ("padding", ctypes.c_uint8 * 56))


class _Finger:
    """Taps through SDL's own event queue, in the SDL library Kivy has loaded."""

    def __init__(self) -> None:
        path = next(
            (
                line.split()[-1]
                for line in Path("/proc/self/maps").read_text().splitlines()
                if "libSDL2-2" in line
            ),
            None,
        )
        if path is None:
            raise RuntimeError("Kivy's SDL2 library is not loaded")
        self._sdl = ctypes.CDLL(path)
        self._sdl.SDL_PushEvent.argtypes = (ctypes.POINTER(_SdlEvent),)
        self._sdl.SDL_PushEvent.restype = ctypes.c_int

    def push(self, down: bool, x: int, y: int) -> None:
        event = _SdlEvent()
        b = event.button
        b.type = _SDL_MOUSEBUTTONDOWN if down else _SDL_MOUSEBUTTONUP
        b.button, b.state, b.clicks, b.x, b.y = _SDL_BUTTON_LEFT, int(down), 1, x, y
        if self._sdl.SDL_PushEvent(ctypes.byref(event)) != 1:
            raise RuntimeError("SDL_PushEvent failed")


@dataclass(frozen=True)
class Tap:
    maxfps: int
    button: str
    to_state_ms: float
    to_frame_ms: float

    @property
    def total_ms(self) -> float:
        return self.to_state_ms + self.to_frame_ms


class _Marks:
    """When the state changed and when the first frame after it was swapped."""

    def __init__(self) -> None:
        self.armed = False
        self.state_at: float | None = None
        self.flip_at: float | None = None

    def arm(self) -> None:
        self.armed, self.state_at, self.flip_at = True, None, None

    def on_state(self, before: Any, after: Any) -> None:
        if self.armed and self.state_at is None and after.state is not before.state:
            self.state_at = time.perf_counter()

    def on_flip(self) -> None:
        if self.armed and self.state_at is not None and self.flip_at is None:
            self.flip_at = time.perf_counter()
            self.armed = False


async def _button_at(pilot: Any, name: str) -> tuple[int, int]:
    """The centre of button ``name`` in SDL's window coordinates, once the layout is still."""
    from kivy.core.window import Window

    await pilot.settle()
    where = None
    for _ in range(50):
        button = pilot.buttons().get(name)
        if button is not None:
            now = (button.to_window(*button.center), tuple(button.size))
            if now == where:
                x, y = now[0]
                return round(x), round(Window.system_size[1] - 1 - y)  # SDL's y runs down
            where = now
        await pilot.frames(1)
    raise RuntimeError(f"no steady button {name!r} on {pilot.state}")


class _Walker:
    """Taps the booth's buttons with a finger and times each new screen."""

    def __init__(self, pilot: Any) -> None:
        self.pilot = pilot
        self.finger = _Finger()
        self.marks = _Marks()
        self.rng = random.Random(20)  # the same finger timings every run

    async def tap(self, name: str, maxfps: int) -> Tap:
        pilot, marks = self.pilot, self.marks
        x, y = await _button_at(pilot, name)
        self.finger.push(True, x, y)
        await asyncio.sleep(self.rng.uniform(0.08, 0.08 + 2 / maxfps))  # a finger rests ~0.1 s
        marks.arm()
        up = time.perf_counter()
        self.finger.push(False, x, y)
        deadline = up + 3.0
        while marks.flip_at is None:
            if time.perf_counter() > deadline:
                marks.armed = False
                raise RuntimeError(f"{name!r} on {pilot.state}: no new screen within 3 s")
            await asyncio.sleep(0.002)
        assert marks.state_at is not None
        return Tap(
            maxfps, name, (marks.state_at - up) * 1000, (marks.flip_at - marks.state_at) * 1000
        )


async def _walks(pilot: Any) -> list[Tap]:
    from kivy.clock import Clock
    from kivy.core.window import Window

    walker = _Walker(pilot)
    marks = walker.marks
    swap = Window.flip

    def timed_flip() -> None:
        swap()
        marks.on_flip()

    Window.flip = timed_flip
    pilot.controller.state_listeners.append(marks.on_state)  # after the app's own listener
    taps: list[Tap] = []
    try:
        for fps in MAXFPS:
            Clock._max_fps = float(fps)
            for _ in range(SHIPPED_WALKS if fps == SHIPPED_MAXFPS else OTHER_WALKS):
                for name in WALK:
                    taps.append(await walker.tap(name, fps))
                await pilot.wait_for("attract", 5)
    finally:
        Clock._max_fps = float(pilot.app.config_.display.maxfps)
        pilot.controller.state_listeners.remove(marks.on_state)
        del Window.flip
    return taps


def touch_latency() -> list[Tap]:
    """Walk the visit's first screens over and over, in this process, offscreen."""
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    from tests.kiosk.ui.harness import booth_config, run_booth

    taps: list[Tap] = []

    async def scenario(pilot: Any) -> None:
        taps.extend(await _walks(pilot))

    with tempfile.TemporaryDirectory(prefix="bench-ui-kivy-") as home:
        own_home = "KIVY_HOME" not in os.environ  # else boot leaves a directory in /tmp
        if own_home:
            os.environ["KIVY_HOME"] = home
        try:
            asyncio.run(run_booth(scenario, booth_config()))
        finally:
            if own_home:
                os.environ.pop("KIVY_HOME", None)
    return taps


# ---------------------------------------------------------------- tables


def _stats(values: list[float]) -> str:
    p95 = statistics.quantiles(values, n=20, method="inclusive")[18]
    return (
        f"{len(values):>3} | {min(values):6.1f} | {statistics.median(values):6.1f} "
        f"| {p95:6.1f} | {max(values):6.1f}"
    )


def main() -> None:
    idle = idle_cpu() if shutil.which("Xvfb") else []
    taps = touch_latency()
    print(
        f"Idle on the attract screen: booth process, {IDLE_S:.0f} s after {SETTLE_S:.0f} s "
        f"settling, under Xvfb (target <= {TARGET_PCT:.0f} % of one core)"
    )
    if not idle:
        print("(not measured: needs Xvfb; `make apt` installs it)")
    print("| maxfps       | booth CPU % | wake-ups/s | Xvfb CPU % | ok?  |")
    print("|--------------|-------------|------------|------------|------|")
    for r in idle:
        name = f"{r.maxfps} (shipped)" if r.maxfps == SHIPPED_MAXFPS else str(r.maxfps)
        verdict = "ok" if r.booth_pct <= TARGET_PCT else "OVER"
        print(
            f"| {name:<12} | {r.booth_pct:11.2f} | {r.wakeups:10.1f} | {r.xvfb_pct:10.2f} "
            f"| {verdict:<4} |"
        )
    print()
    print("Touch to next screen: SDL button-up to the swap of the first frame after the")
    print("state change (ms; offscreen, in-process)")
    print(
        "| maxfps       | tap         |   n |    min | median |    p95 |    max "
        "| to state* | to frame* |"
    )
    print(
        "|--------------|-------------|-----|--------|--------|--------|--------"
        "|-----------|-----------|"
    )
    for fps in MAXFPS:
        mine = [t for t in taps if t.maxfps == fps]
        groups = [("all", mine)]
        if fps == SHIPPED_MAXFPS:
            groups += [(n, [t for t in mine if t.button == n]) for n in WALK]
        for label, group in groups:
            fname = f"{fps} (shipped)" if fps == SHIPPED_MAXFPS else str(fps)
            print(
                f"| {fname:<12} | {label:<11} | {_stats([t.total_ms for t in group])} "
                f"| {statistics.median(t.to_state_ms for t in group):9.1f} "
                f"| {statistics.median(t.to_frame_ms for t in group):9.1f} |"
            )
    print("* medians of the two parts: up-event to the state change, state change to the swap")


if __name__ == "__main__":
    main()

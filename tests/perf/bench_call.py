"""A video call's cost on the booth, against a Chromium page doing the same call.

Targets from the issue, for a 640x480 video call at 30 fps both ways:

* call setup under 1 s, even with a configured STUN server that never answers;
* the booth's CPU at most that of a Chromium page doing the same call;
* the booth's memory at most 0.3x that of the Chromium page.

The benchmark prints the numbers, the ratios and PASS/MISS; it never fails on
a miss.

**The parties.** On this machine, on loopback only: inside a fresh network
namespace whose only interface is ``lo`` when run as root (``tests/netlab.py``;
nothing can leave it), else on the host's 127.0.0.1. Every ICE server list is
explicit: none, or the dead STUN server below; the hub has no TURN server.

* The hub: ``clinic-hub serve --dev`` with a database made here (a clinician,
  two booths and their credentials).
* The clinician: the real console page (``clinic/web/console.js``), signed in
  through the form, in a headless Debian Chromium driven by Playwright, with
  Chromium's fake camera (640x480, ``fps=30``) and microphone. It answers by
  clicking Answer. Its cost is not counted (it is printed for reference).
* The booth: ``telehealth-kiosk --simulate`` exactly as ``kiosk/__main__.py``
  runs it, in its own process, configured like ``scripts/demo_setup.py`` does
  (``examples/demo-booth.toml`` with the hub's address, pin and credential),
  started through this module's ``booth`` command, which adds only the
  benchmark's hooks before calling ``kiosk.__main__.main``:

  - aioice offers 127.0.0.1 (it leaves loopback out on its own; every call
    test here does the same);
  - the simulated camera is a 640x480 test card. The shipped simulator draws
    320x240 (``hardware/camera.py``), a real booth's camera is meant to give
    640x480 (``kiosk/call/tracks.py``: ``MAX_SIZE``);
  - notes, on a pipe of its own, each change of state, each offer sent, and the
    first clinician video frame of each peer connection (the moment the call
    engine keeps it for the screen), and counts those frames.

  The booth sends at the rate of ``kiosk/call/adapt.py``'s top video level:
  **20 fps as shipped** (so "640x480@20" in the tables); a headless row with
  that level patched to 30 fps (``*``) shows what changing the constant would do.

  Two ways of running it: **with its screen** (window mode, the real Kivy
  window on an ``Xvfb`` started here, the booth's screen alone at the
  configured 1024x600: the simulator's panel that a laptop shows beside it
  is left out, as a booth has none; driven by touches at the centre of its
  buttons, delivered in-process through Kivy's touch path like
  ``tests/kiosk/ui/harness.py`` does, since window mode reads no commands),
  and **headless** (``--headless``: no screen, the simulator's commands on
  stdin).
* The browser-kiosk alternative: ``tests/perf/browser_kiosk.html`` in a
  Chromium on the same ``Xvfb`` (a window, like a kiosk browser; software
  rendering, ``--disable-gpu``, like the booth's llvmpipe), speaking to the hub
  as a booth does (``hello``, ``join_queue``, an ``offer`` with every candidate
  after at most 0.5 s of gathering, a ``state`` data channel) with Chromium's
  fake camera and microphone, showing the clinician large and itself small, as
  the booth's call screen does. Its camera plays the booth's own 640x480 test
  card at 30 fps (a Y4M file made here, ``--use-file-for-fake-video-capture``),
  so both send the same picture: the encoders get the same work (Chromium's
  own fake picture, a moving pattern, takes about 4x the bits).

**Call setup.** The resident walks attract -> notice -> check_in ->
device_check -> waiting; 0.5 s after the console shows the booth waiting the
clinician clicks Answer. Measured from that click (the click event's time in
the console page) to the first clinician video frame at the booth (the call
engine's, see above; the Chromium page's ``requestVideoFrameCallback``) and to
the first booth video frame at the console (its remote video's
``requestVideoFrameCallback``, or ``loadeddata`` if earlier). Times from the
pages are epoch times (``performance.timeOrigin + now``) compared with the
booth's ``time.time()``: one machine, one clock. Also shown: click to the
booth's ``in_call`` state (the hub's ``call_started`` arrived) and click to
the offer sent. Each is measured with no STUN server and with
``[[ice_servers]] urls = ["stun:127.0.0.1:PORT"]``, a UDP socket this process
holds open and never reads (the page gets the same server).

Each booth process (and the page) takes ``trials`` calls per STUN setting:
walk to waiting, answer, first frames, the clinician hangs up, the resident
taps Done.

**Cost.** On the last call of each kind, after a few seconds to settle, for a
window of ``measure_s`` seconds of connected call: CPU time (utime + stime,
``/proc/PID/stat``, all threads) of the booth process, or of every process of
the page's Chromium (its browser process and all its descendants), given as
CPU seconds per call-minute (60 x CPU seconds / wall seconds; 60 means one
core busy). Memory: PSS (``/proc/PID/smaps_rollup``) sampled once a second,
the peak; for Chromium the sum over its processes (PSS shares shared pages
out, so the sum counts each page once; their RSS sum would count shared
libraries and shared memory in every process). The booth's ``VmHWM`` (peak
RSS over its whole life) is given too. Xvfb's and the console's CPU over the
same window are printed for reference. What each side actually sent and got
is printed from WebRTC statistics (the console's and the page's
``getStats()``; the booth's count of frames received).

**Where it goes.** For each booth row, over the same window: CPU by thread
(``/proc/PID/task/*/stat``; the booth process names its Python threads on its
pipe): the main thread (Kivy and the booth's loop), Mesa's ``llvmpipe-N``
rasterizer threads, the call's loop, aiortc's codec workers; PSS at the
window's end by mapping (``/proc/PID/smaps``): heap and anonymous memory, GL
libraries (Mesa, LLVM), FFmpeg, Kivy and SDL, numpy, the rest. PSS of a
shared library is split with every process mapping it, so it is lower
while other programs using Mesa or FFmpeg run on the machine. With the
screen, also the clinician pictures the screen took up and the frames Kivy
drew, a second (``BoothApp.remote_pictures``, the window's ``on_flip``).
``BENCH_CALL_KEEP=1`` keeps the booth's last ``smaps`` beside its log.

**Floors.** The same window of measurement over processes that are not a
booth (:func:`floor_main`): a Python with the call's libraries imported and
idle; the booth's Kivy window, configured as the booth configures it, showing
one 640x480 picture taken up and redrawn as the call screen takes up the
clinician's; and both in one process. No booth made of these parts can cost
less on this machine, so the table shows how much of each target the parts
alone use up, and how much the booth adds on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
TEMPLATE = ROOT / "examples" / "demo-booth.toml"
PAGE = HERE / "browser_kiosk.html"
CHROMIUM = Path("/usr/bin/chromium")
TICK = os.sysconf("SC_CLK_TCK")

WIDTH, HEIGHT, FPS = 640, 480, 30
BOOTH_ID = "bench-booth"
PAGE_BOOTH_ID = "bench-browser"
CLINICIAN = "bench"
PASSWORD = "bench-clinician-pass-1"  # a throwaway database in a temporary directory
GATHER_MS = 500  # the page's bound on gathering: kiosk/call/engine.py GATHER_TIMEOUT
ANSWER_AFTER_S = 0.5  # the clinician clicks this long after the booth shows as waiting
STEP_TIMEOUT_S = 15.0

TARGET_SETUP_S = 1.0
TARGET_CPU_RATIO = 1.0  # booth CPU <= the Chromium page's
TARGET_MEM_RATIO = 0.3  # booth PSS <= 0.3 x the Chromium page's

WALK = (("start", "notice"), ("accept", "check_in"), ("walk_in", "device_check"))
WALK_LAST = ("devices_ok", "waiting")


@dataclass(frozen=True)
class Plan:
    """How much to run: the full benchmark, or a few seconds of it (the smoke test)."""

    trials: int = 3  # calls set up per booth kind and STUN setting
    settle_s: float = 4.0  # connected call before the measured window
    measure_s: float = 30.0
    window: bool = True  # the booth with its screen
    headless: bool = True  # the booth without its screen
    fps30: bool = True  # the headless booth with its top video level patched to 30 fps
    dead_stun: bool = True  # setups with a STUN server that never answers too
    floors: bool = True  # the least a booth on these parts can cost, next to it


# ---------------------------------------------------------------- /proc


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of every thread of ``pid`` so far, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 in proc(5)


def _kib(path: str, key: str) -> int | None:
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    match = re.search(rf"(?m)^{key}:\s+(\d+) kB", text)
    return int(match.group(1)) if match else None


def pss_kib(pid: int) -> int | None:
    return _kib(f"/proc/{pid}/smaps_rollup", "Pss")


def status_kib(pid: int, key: str) -> int | None:
    """``VmHWM``, ``VmRSS``... of ``pid`` from /proc/PID/status."""
    return _kib(f"/proc/{pid}/status", key)


def _processes() -> dict[int, tuple[int, list[str]]]:
    """Every process: pid -> (parent pid, command line)."""
    out: dict[int, tuple[int, list[str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        out[int(entry.name)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), cmdline)
    return out


def process_tree(root: int, procs: dict[int, tuple[int, list[str]]] | None = None) -> list[int]:
    """``root`` and all its descendants."""
    procs = _processes() if procs is None else procs
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def chromium_pids(profile: Path) -> list[int]:
    """Every process of the Chromium running with ``--user-data-dir=profile``."""
    procs = _processes()
    flag = f"--user-data-dir={profile}"
    browsers = [
        pid
        for pid, (_, cmd) in procs.items()
        if flag in cmd and not any(a.startswith("--type=") for a in cmd)
    ]
    pids: set[int] = set()
    for pid in browsers:
        pids.update(process_tree(pid, procs))
    pids.update(pid for pid, (_, cmd) in procs.items() if any(str(profile) in a for a in cmd))
    return sorted(pids)


class Meter:
    """CPU and memory of a group of processes (found again at every sample)."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self._pids = pids
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self.peak_pss_kib = 0
        self.peak_rss_kib = 0
        self.processes = 0
        self.started = self.ended = 0.0

    def sample(self) -> None:
        pss = rss = alive = 0
        for pid in self._pids():
            cpu = _cpu_seconds(pid)
            if cpu is None:
                continue
            self._first.setdefault(pid, cpu)
            self._last[pid] = cpu
            pss += pss_kib(pid) or 0
            rss += status_kib(pid, "VmRSS") or 0
            alive += 1
        self.peak_pss_kib = max(self.peak_pss_kib, pss)
        self.peak_rss_kib = max(self.peak_rss_kib, rss)
        self.processes = max(self.processes, alive)
        now = time.monotonic()
        self.started = self.started or now
        self.ended = now

    @property
    def cpu_s(self) -> float:
        return sum(self._last[pid] - self._first[pid] for pid in self._last)

    @property
    def per_minute(self) -> float:
        """CPU seconds per minute of wall time over the samples."""
        wall = self.ended - self.started
        return 60 * self.cpu_s / wall if wall > 0 else float("nan")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Each thread of ``pid``: thread id -> (its kernel name, CPU seconds so far)."""
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                stat = (task / "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


def thread_group(tid: int, kernel_name: str, pid: int, names: dict[int, str]) -> str:
    """Which part of the booth a thread is: Kivy's loop, the call's, codecs, Mesa's..."""
    if tid == pid:
        return "main (Kivy + booth loop)"
    if kernel_name.startswith("llvmpipe"):
        return "llvmpipe (Mesa)"
    name = names.get(tid, kernel_name)
    if name.startswith("call-media"):
        return "call loop (aiortc)"
    if name.startswith(("ThreadPoolExecutor", "asyncio", "video-decoder", "audio-decoder")):
        return "codecs (aiortc's workers)"
    if name.startswith("sim-h264"):
        return SIMULATED_ENCODER
    return "other"


SIMULATED_ENCODER = "simulated hardware encoder"
"""hardware/h264.py's libx264 thread: on a Pi 4 this work is the encoder chip's."""


def cpu_by_group(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    pid: int,
    names: dict[int, str],
    wall: float,
) -> dict[str, float]:
    """CPU seconds per minute of ``wall`` by :func:`thread_group`, busiest first."""
    out: dict[str, float] = {}
    for tid, (kernel_name, cpu) in after.items():
        group = thread_group(tid, kernel_name, pid, names)
        used = cpu - before.get(tid, (kernel_name, 0.0))[1]
        out[group] = out.get(group, 0.0) + 60 * used / wall
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


MAPPING_GROUPS = (
    ("GL (Mesa, LLVM)", re.compile(r"libLLVM|/dri/|libGL|libEGL|libglapi|libgbm|libdrm|libz3")),
    ("FFmpeg, codecs (av)", re.compile(r"/av/|av\.libs|libvpx|libopus|libsrtp|pylibsrtp")),
    ("Kivy, SDL", re.compile(r"/kivy/|Kivy\.libs|SDL")),
    ("numpy", re.compile(r"numpy")),
    ("Python, other libraries", re.compile(r"\.so|python")),
)


def pss_by_group(pid: int) -> dict[str, float]:
    """PSS in MiB of ``pid`` by kind of mapping: heaps, GL libraries, FFmpeg, Python..."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return {}
    out: dict[str, float] = {}
    group = ""
    for line in text.splitlines():
        head = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", line)
        if head:
            path = head.group(1)
            if not path or path == "[heap]":
                group = "heap, malloc arenas, anonymous"
            elif path.startswith("["):
                group = "stacks, kernel"
            else:
                group = next((g for g, rx in MAPPING_GROUPS if rx.search(path)), "other files")
        elif line.startswith("Pss:"):
            out[group] = out.get(group, 0.0) + int(line.split()[1]) / 1024
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------- inside the booth process


def _note_threads(emit: Callable[..., None]) -> None:
    """Tell the benchmark which Python thread each kernel thread is, whenever that changes."""
    seen: dict[int, str] = {}
    while True:
        names = {t.native_id: t.name for t in threading.enumerate() if t.native_id}
        if names != seen:
            seen = names
            emit("threads", names={str(k): v for k, v in names.items()})
        time.sleep(1.0)


class _RemoteVideoProbe:
    """Stands in for ``CallEngine._remote_video``: notes each leg's first frame, counts frames."""

    KEY = "_bench_remote_video"

    def __init__(self, emit: Callable[..., None]) -> None:
        self.emit = emit
        self.frames = 0

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return self if obj is None else obj.__dict__.get(self.KEY)

    def __set__(self, obj: Any, value: Any) -> None:
        before = obj.__dict__.get(self.KEY)
        obj.__dict__[self.KEY] = value
        if value is None:
            return
        self.frames += 1
        if before is None or self.frames % 30 == 0:
            kind = "remote_video" if before is None else "frames"
            self.emit(kind, frames=self.frames, width=value.width, height=value.height)


async def _drive_window(runtime: Any, emit: Callable[..., None]) -> None:
    """Window mode reads no commands: press the booth's buttons for ``press NAME`` on stdin."""
    while "kiosk.ui.app" not in sys.modules:  # Kivy is configured and imported by _window
        await asyncio.sleep(0.05)
    from kivy.app import App

    from tests.kiosk.ui.harness import Pilot

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="bench-commands", daemon=True).start()
    app = App.get_running_app()
    while app is None or app.root_widget is None or not app.renders:
        await asyncio.sleep(0.05)
        app = App.get_running_app()
    pilot = Pilot(app, runtime)
    await pilot.settle()
    emit("window")
    counting = asyncio.ensure_future(_count_drawn(app, emit))
    while (line := await lines.get()) is not None:
        verb, _, name = line.strip().partition(" ")
        if verb != "press":
            continue
        try:
            await pilot.press(name)
        except Exception as exc:
            emit("error", what=f"press {name}: {exc}")
    counting.cancel()


async def _count_drawn(app: Any, emit: Callable[..., None]) -> None:
    """Each second: clinician pictures the screen took up, and frames Kivy drew in all."""
    from kivy.core.window import Window

    flips = [0]

    def flipped(*_: Any) -> None:
        flips[0] += 1

    Window.bind(on_flip=flipped)
    try:
        while True:
            emit("drawn", pictures=app.remote_pictures, flips=flips[0])
            await asyncio.sleep(1.0)
    finally:
        Window.unbind(on_flip=flipped)


def _screen_only() -> None:
    """The booth's screen alone, as on a booth: the simulator's panel is a laptop's extra.

    ``kiosk.__main__`` widens the window and puts the panel beside the screen
    whenever the hardware is simulated; the benchmark presses buttons itself.
    Each redraw of a GPU-less window costs CPU by its area, and the panel
    made the window a quarter wider than the booth's screen.
    """
    from kiosk.ui import boot  # Kivy itself only once it is configured

    configure = boot.configure

    def narrow(*args: Any, **kwargs: Any) -> None:
        configure(*args, **{**kwargs, "extra_width": 0})
        from kiosk.ui import app

        build = app.BoothApp.build

        def alone(self: Any) -> Any:
            root = build(self)
            if root is not self.root_widget:
                root.remove_widget(self.root_widget)
                self.root_widget.size_hint_x = 1
            return self.root_widget

        app.BoothApp.build = alone  # type: ignore[method-assign]

    boot.configure = narrow


def booth_main(argv: list[str]) -> int:
    """``python -m tests.perf.bench_call booth window|headless CONFIG [FPS]``.

    The booth's own entry point (``kiosk.__main__.main``) with the benchmark's
    hooks; what it notes goes, one JSON object a line, to the fd in ``BENCH_FD``.
    """
    mode, config_path = argv[0], argv[1]
    fps = int(argv[2]) if len(argv) > 2 else 0
    fd = int(os.environ["BENCH_FD"])
    lock = threading.Lock()

    def emit(event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "t": time.time(), **fields}) + "\n"
        with lock:
            os.write(fd, line.encode())

    import aioice.ice

    # aioice leaves 127.0.0.1 out of its host candidates; here it is the only address.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

    import kiosk.__main__ as entry
    import kiosk.app
    from clinic.protocol import Offer
    from hardware.camera import TestCard
    from kiosk.call import adapt, tracks
    from kiosk.call.engine import CallEngine
    from kiosk.call.hub_link import HubLink

    kiosk.app.TestCard = functools.partial(TestCard, WIDTH, HEIGHT)  # type: ignore[attr-defined,assignment]
    if fps:
        levels = (replace(adapt.LEVELS[0], fps=fps), *adapt.LEVELS[1:])
        adapt.LEVELS = levels  # type: ignore[misc]
        tracks.LEVELS = levels  # type: ignore[attr-defined]
    CallEngine._remote_video = _RemoteVideoProbe(emit)  # type: ignore[assignment]
    threading.Thread(target=_note_threads, args=(emit,), name="bench-threads", daemon=True).start()

    start = kiosk.app.BoothRuntime.start

    async def noted_start(self: Any) -> Any:
        controller = await start(self)

        def on_state(before: Any, after: Any) -> None:
            if after.state is not before.state:
                emit("state", state=after.state.value)

        controller.state_listeners.append(on_state)
        emit("ready", state=controller.booth.state.value, pid=os.getpid())
        return controller

    kiosk.app.BoothRuntime.start = noted_start  # type: ignore[method-assign]

    send = HubLink.send

    async def noted_send(self: Any, message: Any) -> bool:
        sent = await send(self, message)
        if isinstance(message, Offer):
            emit("offer", sent=sent)
        return sent

    HubLink.send = noted_send  # type: ignore[method-assign]

    if mode == "window":
        _screen_only()
        window = entry._window

        async def driven_window(runtime: Any, cfg: Any) -> None:
            driver = asyncio.ensure_future(_drive_window(runtime, emit))
            try:
                await window(runtime, cfg)
            finally:
                driver.cancel()

        entry._window = driven_window
        return entry.main(["--simulate", "--config", config_path])
    return entry.main(["--simulate", "--headless", "--config", config_path])


FLOOR_IMPORTS = (
    "numpy",
    "av",
    "aiohttp",
    "aiortc",
    "kiosk.app",
    "kiosk.call.engine",
    "kiosk.call.threaded",
    "kiosk.call.hub_link",
)
"""What the booth process imports to make a call (and the booth's own modules that do)."""


def floor_main(argv: list[str]) -> int:
    """``python -m tests.perf.bench_call floor imports|window|both CONFIG``: under the booth.

    ``imports``: a Python with the call's libraries imported, doing nothing.
    ``window``: the booth's Kivy window (configured as the booth configures
    it, at the booth's screen size) showing one 640x480 test card that moves,
    taken up and redrawn as the call screen takes up the clinician's picture
    (:data:`kiosk.ui.app.CALL_FPS`): no booth, no call, no aiortc.
    ``both``: the window, with the call's libraries imported too.
    No booth built on Kivy and aiortc can cost less on the same machine.
    """
    kind, config_path = argv[0], argv[1]
    fd = int(os.environ["BENCH_FD"])

    def ready() -> None:
        os.write(fd, json.dumps({"event": "ready", "pid": os.getpid()}).encode() + b"\n")

    if kind in ("imports", "both"):
        import importlib

        for name in FLOOR_IMPORTS:
            importlib.import_module(name)
    if kind == "imports":
        ready()
        while True:
            time.sleep(3600)

    from hardware.camera import TestCard
    from kiosk import config
    from kiosk.__main__ import _software_rendering_settings
    from kiosk.ui import boot

    _software_rendering_settings()  # as the booth does before Kivy is imported
    boot.configure(config.load(config_path).display, window=True, simulate=True)
    from kivy.app import App
    from kivy.clock import Clock

    from kiosk.ui.app import CALL_FPS
    from kiosk.ui.video import Picture
    from kiosk.ui.widgets import OpaquePicture

    card, picture = TestCard(WIDTH, HEIGHT), Picture()
    card.open()

    class Floor(App):  # type: ignore[misc]
        def build(self) -> Any:
            view = OpaquePicture(fit_mode="contain")
            due = [0.0]

            def tick(_dt: float) -> None:
                # Paced and redrawn as BoothApp paces and redraws the clinician's picture.
                now, period = Clock.get_time(), 1 / CALL_FPS
                if now < due[0]:
                    return
                due[0] = max(due[0], now - period / 2) + period
                if picture.update(card.latest()):
                    view.texture = picture.texture
                    view.canvas.ask_update()

            Clock.schedule_interval(tick, 0)
            Clock.schedule_once(lambda _dt: ready(), 0.5)
            return view

    Clock._max_fps = float(CALL_FPS)
    Floor().run()
    return 0


# ---------------------------------------------------------------- the network


class Lab:
    """Where everything runs: a loopback-only namespace (root), else the host's loopback."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._stack = contextlib.ExitStack()
        self.ns: Any = None
        self._plain: list[subprocess.Popen[Any]] = []
        if os.geteuid() == 0 and all(shutil.which(t) for t in ("ip", "tc", "nft")):
            from tests.netlab import NetLab

            lab = self._stack.enter_context(NetLab())
            self.ns = lab.loopback_only("bench")

    @property
    def where(self) -> str:
        return "a loopback-only network namespace" if self.ns else "the host's 127.0.0.1"

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        if self.ns is not None:
            return self.ns.popen(argv, **kwargs)  # type: ignore[no-any-return]
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, **kwargs)
        self._plain.append(proc)
        return proc

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.ns is not None:
            from tests.netlab import call_in

            return call_in(self.ns, fn, *args)
        return fn(*args)

    def free_port(self) -> int:
        def pick() -> int:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return int(s.getsockname()[1])

        return int(self.call(pick))

    def dead_stun(self) -> socket.socket:
        """A UDP socket on 127.0.0.1 that is never read: a STUN server that never answers."""

        def make() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            return s

        sock: socket.socket = self.call(make)
        self._stack.callback(sock.close)
        return sock

    def chromium(self) -> str:
        if self.ns is not None:
            from tests.browser import netns_executable

            return str(netns_executable(self.ns, self.tmp))
        return str(CHROMIUM)

    def serve(self, directory: Path) -> str:
        """Serve ``directory`` on http://127.0.0.1 (a secure context for getUserMedia)."""
        if self.ns is not None:
            from tests.browser import serve_directory

            return str(self._stack.enter_context(serve_directory(self.ns, directory)))

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        handler = functools.partial(Quiet, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self._stack.callback(server.server_close)
        self._stack.callback(server.shutdown)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def close(self) -> None:
        for proc in self._plain:
            _stop(proc)
        self._stack.close()


def _stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
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
            number = f.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}", proc
    finally:
        _stop(proc)


# ---------------------------------------------------------------- the hub


@dataclass
class Hub:
    base: str  # https://127.0.0.1:PORT
    booth_url: str  # wss://127.0.0.1:PORT/booth
    fingerprint: str
    tokens: dict[str, str]


def _prepare_hub(tmp: Path) -> tuple[Path, str, dict[str, str]]:
    from clinic.server import dev_certificate
    from clinic.store import Store

    db = tmp / "hub.sqlite3"
    _, _, fingerprint = dev_certificate(tmp / "dev-tls")  # where `serve --dev` looks for it
    tokens = {}
    with Store(db) as store:
        store.add_clinician(CLINICIAN, PASSWORD, "Bench Clinician")
        for booth_id, name in ((BOOTH_ID, "Python booth"), (PAGE_BOOTH_ID, "Browser kiosk")):
            tokens[booth_id] = store.add_booth(
                booth_id, name=name, site="Bench site", address="1 Loopback Way", room="Lab"
            )
    return db, fingerprint, tokens


def _start_hub(lab: Lab, tmp: Path) -> Hub:
    db, fingerprint, tokens = _prepare_hub(tmp)
    port = lab.free_port()
    hub_cli = Path(sys.executable).parent / "clinic-hub"
    argv = [str(hub_cli), "serve", "--dev", "--db", str(db), "--host", "127.0.0.1"]
    with (tmp / "hub.log").open("wb") as log:  # the hub has its own copy of the fd
        lab.popen([*argv, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)

    def up() -> bool:
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex(("127.0.0.1", port)) == 0

    deadline = time.monotonic() + 20
    while not lab.call(up):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the hub did not start; see {tmp / 'hub.log'}")
        time.sleep(0.1)
    base = f"https://127.0.0.1:{port}"
    return Hub(base, f"wss://127.0.0.1:{port}/booth", fingerprint, tokens)


def _booth_config(tmp: Path, hub: Hub, name: str, stun: list[str]) -> Path:
    credential = tmp / "booth-credential"
    if not credential.exists():
        fd = os.open(credential, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(hub.tokens[BOOTH_ID] + "\n")
    text = TEMPLATE.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^id = ".*"$', f'id = "{BOOTH_ID}"', text, count=1)
    text = re.sub(r'(?m)^url = ".*"$', f'url = "{hub.booth_url}"', text)
    text = re.sub(
        r'(?m)^certificate_sha256 = ".*"$',
        f'certificate_sha256 = "{hub.fingerprint}"\ncredential_file = "{credential}"',
        text,
    )
    if stun:
        text += "\n[[ice_servers]]\nurls = [" + ", ".join(f'"{u}"' for u in stun) + "]\n"
    path = tmp / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- the booth process


def _child(
    start: Callable[..., subprocess.Popen[Any]],
    command: list[str],
    *,
    tmp: Path,
    name: str,
    display: str | None,
    stdin: int,
    extra_env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[Any], int, Path]:
    """``python -m tests.perf.bench_call COMMAND...`` started by ``start``, noting on a pipe.

    Its own Kivy home, its stderr in ``tmp/NAME.log``, the X display only when
    given. Returns the process, the read end of its notes pipe, and the log.
    """
    read, write = os.pipe()
    env = {
        **os.environ,
        "BENCH_FD": str(write),
        "KIVY_HOME": str(tmp / f"kivy-{name}"),
        "KIVY_NO_ARGS": "1",
        "PYTHONPATH": str(ROOT),
    }
    for var in ("SDL_VIDEODRIVER", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "DISPLAY"):
        env.pop(var, None)
    if display:
        env["DISPLAY"] = display
    env.update(extra_env or {})
    log = tmp / f"{name}.log"
    try:
        with log.open("wb") as out:
            proc = start(
                [sys.executable, "-m", "tests.perf.bench_call", *command],
                env=env,
                cwd=ROOT,
                stdin=stdin,
                stdout=subprocess.DEVNULL,
                stderr=out,
                pass_fds=(write,),
            )
    finally:
        os.close(write)
    return proc, read, log


class BoothProcess:
    """The booth, started through :func:`booth_main`; what it notes arrives in ``events``."""

    def __init__(
        self,
        lab: Lab,
        tmp: Path,
        config_path: Path,
        *,
        window: bool,
        display: str,
        fps: int = 0,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.window = window
        name = (
            config_path.stem + ("-window" if window else "-headless") + (f"-{fps}" if fps else "")
        )
        command = ["booth", "window" if window else "headless", str(config_path)]
        if fps:
            command.append(str(fps))
        self.proc, read, self.log = _child(
            lab.popen,
            command,
            tmp=tmp,
            name=f"booth-{name}",
            display=display if window else None,
            stdin=subprocess.PIPE,
            extra_env=extra_env,
        )
        self.events: list[dict[str, Any]] = []  # JSON objects from the booth
        self.state = ""
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, args=(read,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as f:
            for raw in f:
                event = json.loads(raw)
                if event["event"] in ("state", "ready"):
                    self.state = event["state"]
                self.events.append(event)

    def _command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def tap(self, name: str) -> None:
        self._command(f"press {name}" if self.window else f"touch {name}")

    def last(self, event: str, since: float = 0.0) -> dict[str, Any] | None:
        for e in reversed(self.events):
            if e["event"] == event and e["t"] >= since:
                return dict(e)
        return None

    async def until(
        self, what: Callable[[], Any], label: str, timeout: float = STEP_TIMEOUT_S
    ) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := what()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the booth exited ({self.proc.returncode}); see {self.log}")
            errors = [e for e in self.events if e["event"] == "error"]
            if errors:
                raise RuntimeError(f"the booth's driver: {errors[-1]['what']}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"booth: no {label} within {timeout:.0f} s (state {self.state})")
            await asyncio.sleep(0.01)
        return value

    async def wait_for(self, what: Callable[[], Any], timeout: float = STEP_TIMEOUT_S) -> Any:
        """Like :meth:`until`, but None when ``timeout`` passes (the booth must live on)."""
        try:
            return await self.until(what, "", timeout)
        except TimeoutError:
            return None

    async def started(self) -> None:
        await self.until(lambda: self.last("ready"), "ready", 60)
        if self.window:
            await self.until(lambda: self.last("window"), "window", 60)

    async def walk_to_waiting(self) -> None:
        for name, state in (*WALK, WALK_LAST):
            self.tap(name)
            await self.until(lambda s=state: self.state == s, state)  # type: ignore[misc]

    async def back_to_attract(self) -> None:
        await self.until(lambda: self.state in ("wrap_up", "attract"), "wrap_up")
        if self.state == "wrap_up":
            self.tap("done")
        await self.until(lambda: self.state == "attract", "attract")

    def stop(self) -> None:
        _stop(self.proc)
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


# ---------------------------------------------------------------- the pages

# Chromium flags: tests/browser.py's, with the fake camera at 30 fps.
FAKE_DEVICES = f"--use-fake-device-for-media-stream=fps={FPS}"

CONSOLE_HOOK = """
(() => {
  const bench = { click: null, frame: null, loaded: null };
  window.__bench = bench;
  const now = () => performance.timeOrigin + performance.now();
  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target || !target.closest('[data-testid="answer"]')) return;
    bench.click = performance.timeOrigin + event.timeStamp;
    bench.frame = bench.loaded = null;
    const video = document.querySelector('[data-testid="remote-video"]');
    if (video && video.requestVideoFrameCallback) {
      video.requestVideoFrameCallback((at) => {
        if (bench.frame === null) bench.frame = performance.timeOrigin + at;
      });
    }
  }, true);
  document.addEventListener("loadeddata", (event) => {
    const t = event.target;
    const remote = t && t.dataset && t.dataset.testid === "remote-video";
    if (remote && bench.click && bench.loaded === null) bench.loaded = now();
  }, true);
})();
"""

# Video statistics of a peer connection: what it sends and what it receives.
VIDEO_STATS = """
async (pc) => {
  const out = { inFrames: 0, inBytes: 0, inW: 0, inH: 0,
                outFrames: 0, outBytes: 0, outW: 0, outH: 0, codec: null, at: performance.now() };
  if (!pc) return out;
  const report = await pc.getStats();
  const codecs = new Map();
  report.forEach((s) => { if (s.type === "codec") codecs.set(s.id, s.mimeType); });
  report.forEach((s) => {
    if (s.kind !== "video") return;
    if (s.type === "inbound-rtp") {
      out.inFrames += s.framesDecoded || 0; out.inBytes += s.bytesReceived || 0;
      out.inW = s.frameWidth || out.inW; out.inH = s.frameHeight || out.inH;
      if (s.codecId && codecs.has(s.codecId)) out.codec = codecs.get(s.codecId);
    } else if (s.type === "outbound-rtp") {
      out.outFrames += s.framesEncoded || 0; out.outBytes += s.bytesSent || 0;
      out.outW = s.frameWidth || out.outW; out.outH = s.frameHeight || out.outH;
    }
  });
  return out;
}
"""


def test_card_y4m(path: Path, seconds: float = 2.0) -> Path:
    """The booth's simulated camera (its 640x480 test card) as a Y4M file at 30 fps.

    Chromium's fake camera plays it in a loop, so the page sends the picture the
    booth sends. Two seconds: the sweeping block jumps back once per loop.
    """
    import numpy as np

    from hardware.camera import TestCard
    from kiosk.call.tracks import to_video_frame

    card = TestCard(WIDTH, HEIGHT)
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(round(seconds * FPS)):
            frame = to_video_frame(card.frame_at(n / FPS)).reformat(format="yuv420p")
            f.write(b"FRAME\n" + np.ascontiguousarray(frame.to_ndarray()).tobytes())
    return path


def _chromium_args() -> list[str]:
    from tests.browser import chromium_args

    return [
        FAKE_DEVICES if a == "--use-fake-device-for-media-stream" else a for a in chromium_args()
    ]


@dataclass
class Flow:
    """Video one way over a measured window, from two getStats() readings."""

    width: int
    height: int
    fps: float
    kbps: float

    def __str__(self) -> str:
        return f"{self.width}x{self.height}@{self.fps:.0f} {self.kbps:.0f} kbit/s"


def _flows(a: dict[str, Any], b: dict[str, Any]) -> tuple[Flow, Flow, str]:
    """(received, sent, codec) between two VIDEO_STATS readings."""
    seconds = max(1e-3, (b["at"] - a["at"]) / 1000)
    received = Flow(
        b["inW"], b["inH"], (b["inFrames"] - a["inFrames"]) / seconds,
        8 * (b["inBytes"] - a["inBytes"]) / seconds / 1000,
    )  # fmt: skip
    sent = Flow(
        b["outW"], b["outH"], (b["outFrames"] - a["outFrames"]) / seconds,
        8 * (b["outBytes"] - a["outBytes"]) / seconds / 1000,
    )  # fmt: skip
    return received, sent, str(b["codec"] or "?")


class Console:
    """The clinician's console page, signed in."""

    def __init__(self, page: Any) -> None:
        self.page = page

    @classmethod
    async def open(cls, playwright: Any, lab: Lab, tmp: Path, hub: Hub) -> Console:
        context = await playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp / "console-profile"),
            executable_path=lab.chromium(),
            headless=True,
            args=_chromium_args(),
            ignore_https_errors=True,
            timeout=30_000,
        )
        page = context.pages[0] if context.pages else await context.new_page()
        await page.add_init_script(CONSOLE_HOOK)
        await page.goto(f"{hub.base}/")
        await page.fill('[data-testid="login-username"]', CLINICIAN)
        await page.fill('[data-testid="login-password"]', PASSWORD)
        await page.click('[data-testid="login-submit"]')
        await page.wait_for_url(f"{hub.base}/", timeout=30_000)
        await page.wait_for_function("() => window.consoleTest && consoleTest.state === 'lobby'")
        return cls(page)

    async def answer(self, booth_id: str) -> float:
        """Click Answer for ``booth_id`` shortly after it shows as waiting; the click's time."""
        button = self.page.locator(
            f'[data-testid="queue-row"][data-booth-id="{booth_id}"] [data-testid="answer"]'
        )
        await button.wait_for(timeout=STEP_TIMEOUT_S * 1000)
        await self.page.wait_for_function(
            "(id) => consoleTest.state === 'lobby' && !document.querySelector("
            "`[data-testid=queue-row][data-booth-id=${id}] [data-testid=answer]`).disabled",
            arg=booth_id,
        )
        await asyncio.sleep(ANSWER_AFTER_S)
        before = time.time()
        await button.click()
        clicked = float(await self.page.evaluate("() => window.__bench.click")) / 1000
        if not before - 0.05 < clicked < time.time() + 0.05:
            print(
                f"bench_call: the page's clock and time.time() differ ({clicked - before:+.3f} s)",
                file=sys.stderr,
            )
        return clicked

    async def first_frame(self) -> float | None:
        """When the booth's first video frame showed in the console (epoch seconds), if it did."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            handle = await self.page.wait_for_function(
                "() => { const b = window.__bench; const t = [b.frame, b.loaded].filter((x) => x);"
                " return t.length ? Math.min(...t) : null; }",
                timeout=STEP_TIMEOUT_S * 1000,
            )
        except PlaywrightTimeout:
            return None
        return float(await handle.json_value()) / 1000

    async def stats(self) -> dict[str, Any]:
        pc = await self.page.evaluate_handle("() => consoleTest.pc")
        return dict(await self.page.evaluate(VIDEO_STATS, pc))

    async def hang_up(self) -> None:
        """End the call, unless the booth side already did (a call that never connected)."""
        if await self.page.evaluate("() => consoleTest.state") == "in_call":
            await self.page.click('[data-testid="end-call"]')
        await self.page.wait_for_function("() => consoleTest.state === 'lobby'")


class KioskPage:
    """tests/perf/browser_kiosk.html in its own Chromium, a window on the X server."""

    def __init__(self, context: Any, page: Any, profile: Path, camera: Path) -> None:
        self.context, self.page, self.profile, self.camera = context, page, profile, camera

    @classmethod
    async def open(cls, playwright: Any, lab: Lab, tmp: Path, display: str) -> KioskPage:
        profile = tmp / "kiosk-profile"
        camera = test_card_y4m(tmp / "test-card.y4m")
        context = await playwright.chromium.launch_persistent_context(
            user_data_dir=str(profile),
            executable_path=lab.chromium(),
            headless=False,
            args=[
                *_chromium_args(),
                f"--use-file-for-fake-video-capture={camera}",
                "--window-size=1024,600",
                "--window-position=0,0",
            ],
            env={**os.environ, "DISPLAY": display},
            no_viewport=True,
            ignore_https_errors=True,
            timeout=30_000,
        )
        page = context.pages[0] if context.pages else await context.new_page()
        return cls(context, page, profile, camera)

    async def load(self, base: str, hub: Hub, stun: list[str]) -> None:
        from urllib.parse import urlencode

        query = urlencode(
            {
                "hub": hub.booth_url,
                "booth": PAGE_BOOTH_ID,
                "token": hub.tokens[PAGE_BOOTH_ID],
                "ice": json.dumps(stun),
                "gather": str(GATHER_MS),
            }
        )
        await self.page.goto(f"{base}/{PAGE.name}?{query}")
        await self.until("bench.state === 'online'")

    async def until(self, expression: str, *, missing_ok: bool = False) -> Any:
        """Wait for ``expression`` about ``bench`` to be truthy; None on a timeout if missing_ok."""
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            handle = await self.page.wait_for_function(
                f"() => {{ const bench = window.bench; if (bench && bench.errors.length)"
                f" throw new Error(bench.errors.join('; ')); return bench && ({expression}); }}",
                timeout=STEP_TIMEOUT_S * 1000,
            )
        except PlaywrightTimeout:
            if missing_ok:
                return None
            raise
        return await handle.json_value()

    async def join(self) -> None:
        await self.page.evaluate("() => window.joinQueue()")
        await self.until("bench.state === 'waiting'")

    async def stats(self) -> dict[str, Any]:
        pc = await self.page.evaluate_handle("() => window.bench.pc")
        return dict(await self.page.evaluate(VIDEO_STATS, pc))

    async def close(self) -> None:
        await self.context.close()


# ---------------------------------------------------------------- measuring


@dataclass
class Setup:
    """One call set up: seconds from the click on Answer."""

    in_call: float | None  # the booth heard call_started (state in_call)
    offer: float | None  # the booth's offer went to the hub
    at_booth: float | None  # first clinician frame at the booth (None: none came)
    at_console: float | None  # first booth frame at the console


@dataclass
class Cost:
    """A connected call's cost over the measured window."""

    cpu_min: float  # CPU seconds per call-minute
    pss_mib: float  # peak PSS
    hwm_mib: float | None  # VmHWM (one process only)
    rss_mib: float  # peak RSS sum (double counts shared pages across processes)
    processes: int
    xvfb_min: float
    console_min: float
    window_s: float
    booth_sent: Flow | None = None  # as the console received it
    booth_got: str = ""  # the console's video as the booth side received it
    codec: str = ""
    cpu_parts: dict[str, float] = field(default_factory=dict)  # s/min by thread group
    pss_parts: dict[str, float] = field(default_factory=dict)  # MiB by kind of mapping
    drawn: str = ""  # the screen: clinician pictures shown and frames drawn, a second


@dataclass
class Row:
    name: str
    setups: dict[str, list[Setup]] = field(default_factory=dict)  # by STUN setting
    cost: Cost | None = None
    floor: bool = False  # a floor under the booth (:func:`floor_main`), not a call


@dataclass
class Clinic:
    """What every call shares: the plan, the clinician's console, the X server."""

    plan: Plan
    console: Console
    console_profile: Path
    xvfb: subprocess.Popen[bytes]

    async def measure(self, subject: Meter) -> tuple[float, float]:
        """Sample ``subject`` once a second over the window; Xvfb's and the console's CPU."""
        xvfb = Meter(lambda: [self.xvfb.pid])
        console = Meter(lambda: chromium_pids(self.console_profile))
        for m in (subject, xvfb, console):
            m.sample()
        end = time.monotonic() + self.plan.measure_s
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            subject.sample()
        xvfb.sample()
        console.sample()
        return xvfb.per_minute, console.per_minute


def _cost(meter: Meter, others: tuple[float, float], hwm_kib: int | None) -> Cost:
    return Cost(
        cpu_min=meter.per_minute,
        pss_mib=meter.peak_pss_kib / 1024,
        hwm_mib=hwm_kib / 1024 if hwm_kib else None,
        rss_mib=meter.peak_rss_kib / 1024,
        processes=meter.processes,
        xvfb_min=others[0],
        console_min=others[1],
        window_s=meter.ended - meter.started,
    )


async def _booth_calls(
    clinic: Clinic, booth: BoothProcess, trials: int, measure: bool
) -> tuple[list[Setup], Cost | None]:
    """``trials`` calls to the booth process; the last one measured if ``measure``."""
    console = clinic.console
    await booth.started()
    setups: list[Setup] = []
    cost = None
    for i in range(trials):
        await booth.walk_to_waiting()
        clicked = await console.answer(BOOTH_ID)
        at_console = await console.first_frame()
        frame = await booth.wait_for(functools.partial(booth.last, "remote_video", clicked))
        in_call = next(
            (e["t"] for e in booth.events if e["event"] == "state" and e["state"] == "in_call"
             and e["t"] >= clicked),
            None,
        )  # fmt: skip
        offer = booth.last("offer", clicked)
        setups.append(
            Setup(
                in_call - clicked if in_call else None,
                offer["t"] - clicked if offer else None,
                frame["t"] - clicked if frame else None,
                at_console - clicked if at_console else None,
            )
        )
        if measure and i == trials - 1:
            await asyncio.sleep(clinic.plan.settle_s)
            first = frame or {"t": time.time(), "frames": 0, "width": 0, "height": 0}
            before, frames_before = await console.stats(), booth.last("frames") or first
            meter = Meter(functools.partial(process_tree, booth.pid))
            threads_before, drawn_before = thread_cpu(booth.pid), booth.last("drawn")
            others = await clinic.measure(meter)
            threads_after, drawn_after = thread_cpu(booth.pid), booth.last("drawn")
            after, frames_after = await console.stats(), booth.last("frames") or first
            cost = _cost(meter, others, status_kib(booth.pid, "VmHWM"))
            names = {
                int(k): v for k, v in (booth.last("threads") or {"names": {}})["names"].items()
            }
            cost.cpu_parts = cpu_by_group(
                threads_before, threads_after, booth.pid, names, cost.window_s
            )
            cost.pss_parts = pss_by_group(booth.pid)
            if os.environ.get("BENCH_CALL_KEEP"):  # every mapping, for a closer look
                with contextlib.suppress(OSError):
                    shutil.copy(f"/proc/{booth.pid}/smaps", booth.log.with_suffix(".smaps"))
            if drawn_before and drawn_after and drawn_after["t"] > drawn_before["t"]:
                span = drawn_after["t"] - drawn_before["t"]
                shown = (drawn_after["pictures"] - drawn_before["pictures"]) / span
                flips = (drawn_after["flips"] - drawn_before["flips"]) / span
                cost.drawn = f"{shown:.1f} clinician pictures/s shown, {flips:.1f} frames/s drawn"
            cost.booth_sent, _, cost.codec = _flows(before, after)
            span = frames_after["t"] - frames_before["t"]
            rate = (frames_after["frames"] - frames_before["frames"]) / span if span > 0 else 0
            cost.booth_got = f"{frames_after['width']}x{frames_after['height']}@{rate:.0f}"
        await console.hang_up()
        await booth.back_to_attract()
    return setups, cost


async def _page_calls(
    clinic: Clinic, kiosk: KioskPage, trials: int, measure: bool
) -> tuple[list[Setup], Cost | None]:
    """``trials`` calls to the Chromium page; the last one measured if ``measure``."""
    console = clinic.console
    setups: list[Setup] = []
    cost = None
    for i in range(trials):
        await kiosk.join()
        clicked = await console.answer(PAGE_BOOTH_ID)
        at_console = await console.first_frame()
        got = await kiosk.until(
            "bench.frameAt || bench.loadedAt ? "
            "Math.min(...[bench.frameAt, bench.loadedAt].filter((x) => x)) : null",
            missing_ok=True,
        )
        marks = await kiosk.page.evaluate("() => ({s: bench.startedAt, o: bench.offerAt})")
        setups.append(
            Setup(
                marks["s"] / 1000 - clicked if marks["s"] else None,
                marks["o"] / 1000 - clicked if marks["o"] else None,
                got / 1000 - clicked if got else None,
                at_console - clicked if at_console else None,
            )
        )
        if measure and i == trials - 1:
            await asyncio.sleep(clinic.plan.settle_s)
            before, page_before = await console.stats(), await kiosk.stats()
            meter = Meter(functools.partial(chromium_pids, kiosk.profile))
            others = await clinic.measure(meter)
            after, page_after = await console.stats(), await kiosk.stats()
            cost = _cost(meter, others, None)
            cost.booth_sent, _, cost.codec = _flows(before, after)
            page_got, _, _ = _flows(page_before, page_after)
            cost.booth_got = f"{page_got.width}x{page_got.height}@{page_got.fps:.0f}"
        await console.hang_up()
        await kiosk.until("bench.state === 'ended'")
    return setups, cost


FLOORS = {
    "imports": "floor: the call's libraries imported",
    "window": "floor: Kivy window, one picture",
    "both": "floor: both in one process",
}


async def _floor(clinic: Clinic, tmp: Path, config_path: Path, kind: str, display: str) -> Row:
    """A :func:`floor_main` process measured like a booth in a call, over the same window."""
    proc, read, _log = _child(
        subprocess.Popen,
        ["floor", kind, str(config_path)],
        tmp=tmp,
        name=f"floor-{kind}",
        display=None if kind == "imports" else display,
        stdin=subprocess.DEVNULL,
    )

    def first_line() -> bytes:
        with os.fdopen(read, "rb") as f:
            return f.readline()

    try:
        if not await asyncio.wait_for(asyncio.to_thread(first_line), STEP_TIMEOUT_S):
            raise RuntimeError(f"the {kind} floor process ended early: see floor-{kind}.log")
        await asyncio.sleep(clinic.plan.settle_s)
        meter = Meter(lambda: [proc.pid])
        cost = _cost(meter, await clinic.measure(meter), status_kib(proc.pid, "VmHWM"))
        cost.pss_parts = pss_by_group(proc.pid)
    finally:
        _stop(proc)
    return Row(FLOORS[kind], cost=cost, floor=True)


async def run(plan: Plan) -> tuple[list[Row], str]:
    """Every measurement of the plan; the rows of the tables and where it ran."""
    from playwright.async_api import async_playwright

    rows: list[Row] = []
    with _workdir() as tmp, _xvfb() as (display, xvfb):
        lab = Lab(tmp)
        try:
            hub = _start_hub(lab, tmp)
            stun = [f"stun:127.0.0.1:{lab.dead_stun().getsockname()[1]}"]
            # The dead STUN server first: the last call, with none, is the one measured.
            settings = ({"dead STUN": stun} if plan.dead_stun else {}) | {"no STUN": []}
            configs = {
                s: _booth_config(tmp, hub, s.replace(" ", "-"), u) for s, u in settings.items()
            }
            async with async_playwright() as playwright:
                console = await Console.open(playwright, lab, tmp, hub)
                clinic = Clinic(plan, console, tmp / "console-profile", xvfb)
                # (row, window mode, top video level patched to fps, setup trials per setting)
                kinds = []
                if plan.window:
                    kinds.append((f"booth, with its screen ({WIDTH}x{HEIGHT}@20)", True, 0, 0))
                if plan.headless:
                    kinds.append((f"booth, headless ({WIDTH}x{HEIGHT}@20)", False, 0, 0))
                if plan.fps30:
                    kinds.append((f"booth, headless ({WIDTH}x{HEIGHT}@{FPS}*)", False, FPS, 1))
                for name, window, fps, trials in kinds:
                    row = Row(name)
                    for setting in settings:
                        if fps and setting != "no STUN":
                            continue  # the patched row is there for its cost
                        booth = BoothProcess(
                            lab, tmp, configs[setting], window=window, display=display, fps=fps
                        )
                        try:
                            row.setups[setting], cost = await _booth_calls(
                                clinic, booth, trials or plan.trials, setting == "no STUN"
                            )
                        finally:
                            booth.stop()
                        row.cost = cost or row.cost
                    rows.append(row)

                if plan.floors:
                    for kind in FLOORS:
                        rows.append(await _floor(clinic, tmp, configs["no STUN"], kind, display))

                base = lab.serve(_page_dir(tmp))
                kiosk = await KioskPage.open(playwright, lab, tmp, display)
                try:
                    row = Row(f"Chromium page ({WIDTH}x{HEIGHT}@{FPS})")
                    for setting, urls in settings.items():
                        await kiosk.load(base, hub, urls)
                        row.setups[setting], cost = await _page_calls(
                            clinic, kiosk, plan.trials, setting == "no STUN"
                        )
                        row.cost = cost or row.cost
                    rows.append(row)
                finally:
                    await kiosk.close()
        finally:
            lab.close()
    return rows, lab.where


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A temporary directory; kept (and named) when ``BENCH_CALL_KEEP`` is set, for its logs."""
    if os.environ.get("BENCH_CALL_KEEP"):
        path = Path(tempfile.mkdtemp(prefix="bench-call-"))
        print(f"bench_call: logs and configs kept in {path}", file=sys.stderr)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bench-call-") as d:
        yield Path(d)


def _page_dir(tmp: Path) -> Path:
    """A directory holding only the kiosk page, to serve."""
    out = tmp / "www"
    out.mkdir(exist_ok=True)
    shutil.copy(PAGE, out / PAGE.name)
    return out


# ---------------------------------------------------------------- tables


def _ms(values: list[float | None]) -> str:
    """Median / max in ms; "none" for a call where it never happened."""
    got = [v for v in values if v is not None]
    if not got:
        return f"{'none':>15}"
    worst = "  none" if len(got) < len(values) else f"{1000 * max(got):6.0f}"
    return f"{1000 * statistics.median(got):6.0f} / {worst}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _worst(setups: list[Setup]) -> float:
    """The slowest first frame, either way; infinite when a call got none."""
    ends = [t for s in setups for t in (s.at_booth, s.at_console)]
    return float("inf") if None in ends else max(t for t in ends if t is not None)


def print_tables(rows: list[Row], plan: Plan, where: str) -> None:
    print(
        f"Video call setup, clinician console <-> booth side, on {where}: ms from the click on "
        "Answer, median / max"
    )
    print(
        "| booth side                          | ICE servers | n | -> call_started "
        "| -> offer sent   | -> frame @booth | -> frame @console | < 1 s |"
    )
    print(
        "|-------------------------------------|-------------|---|-----------------|-----------------"
        "|-----------------|-------------------|-------|"
    )
    for row in rows:
        for setting, setups in row.setups.items():
            if setups:
                print(
                    f"| {row.name:<35} | {setting:<11} | {len(setups)} "
                    f"| {_ms([s.in_call for s in setups])} | {_ms([s.offer for s in setups])} "
                    f"| {_ms([s.at_booth for s in setups])} "
                    f"| {_ms([s.at_console for s in setups])}   "
                    f"| {_verdict(_worst(setups) < TARGET_SETUP_S):<5} |"
                )
    print(
        "dead STUN: [[ice_servers]] stun:127.0.0.1:PORT, a UDP port nobody reads. call_started: "
        "the booth's state in_call (the page: the message arrived)."
    )
    print()
    print(
        f"Connected call, {plan.measure_s:.0f} s measured after {plan.settle_s:.0f} s: CPU s per "
        "call-minute (60 = one core busy), peak memory MiB, video as received"
    )
    print(
        "| booth side                          | CPU s/min | PSS peak | VmHWM | RSS sum | procs "
        "| booth -> console          | console -> booth | codec     | Xvfb s/min | console s/min |"
    )
    print(
        "|-------------------------------------|-----------|----------|-------|---------|-------"
        "|---------------------------|------------------|-----------|------------|---------------|"
    )
    for row in rows:
        c = row.cost
        if c is None or row.floor:
            continue
        hwm = f"{c.hwm_mib:5.0f}" if c.hwm_mib is not None else f"{'-':>5}"
        print(
            f"| {row.name:<35} | {c.cpu_min:9.1f} | {c.pss_mib:8.0f} | {hwm} | {c.rss_mib:7.0f} "
            f"| {c.processes:5d} | {c.booth_sent!s:<25} | {c.booth_got:<16} | {c.codec:<9} "
            f"| {c.xvfb_min:10.1f} | {c.console_min:13.1f} |"
        )
    for row in rows:
        c = row.cost
        if c is None or not c.cpu_parts or row.floor:
            continue
        print(f"Where it goes, {row.name}:")
        print("  CPU s/min: " + ", ".join(f"{k} {v:.1f}" for k, v in c.cpu_parts.items()))
        print("  PSS MiB:   " + ", ".join(f"{k} {v:.0f}" for k, v in c.pss_parts.items()))
        if c.drawn:
            print(f"  screen:    {c.drawn}")
    print(
        "@20: the booth as shipped sends its top video level at 20 fps (kiosk/call/adapt.py "
        f"LEVELS); *: that level patched to {FPS} fps in the booth process only. RSS sum counts "
        "pages shared between processes once per process; PSS does not."
    )
    print()
    page = next((r.cost for r in rows if r.name.startswith("Chromium") and r.cost), None)
    _print_floors([r for r in rows if r.floor], page)
    print("Targets")
    print("| target                          | booth side                          | measured"
          "                      | ok?  |")  # fmt: skip
    print("|---------------------------------|-------------------------------------|---------"
          "----------------------|------|")  # fmt: skip
    for row in rows:
        if not row.name.startswith("booth"):
            continue
        lines = []
        if page is not None and row.cost is not None:
            cpu = row.cost.cpu_min / page.cpu_min
            mem = row.cost.pss_mib / page.pss_mib
            lines.append((
                "CPU <= the Chromium page's",
                f"{cpu:5.2f}x ({row.cost.cpu_min:.1f} vs {page.cpu_min:.1f} s/min)",
                cpu <= TARGET_CPU_RATIO,
            ))  # fmt: skip
            lines.append((
                "PSS <= 0.3x the Chromium page's",
                f"{mem:5.2f}x ({row.cost.pss_mib:.0f} vs {page.pss_mib:.0f} MiB)",
                mem <= TARGET_MEM_RATIO,
            ))  # fmt: skip
        for setting, setups in row.setups.items():
            if setups:
                worst = _worst(setups)
                lines.append((
                    f"setup < 1 s, {setting}", f"worst {1000 * worst:.0f} ms of {len(setups)}",
                    worst < TARGET_SETUP_S,
                ))  # fmt: skip
        for target, measured, ok in lines:
            print(f"| {target:<31} | {row.name:<35} | {measured:<29} | {_verdict(ok)} |")


def _print_floors(floors: list[Row], page: Cost | None) -> None:
    """The floors, and how much of the memory target each leaves to the booth itself."""
    if not floors:
        return
    print(
        "Floors, measured like the booth over a window of the same length: no booth and no "
        "call, only the parts any booth on Kivy and aiortc is made of"
    )
    print("| floor                                | CPU s/min | PSS peak | x page PSS "
          "| PSS MiB by kind of mapping                                    |")  # fmt: skip
    print("|--------------------------------------|-----------|----------|------------"
          "|---------------------------------------------------------------|")  # fmt: skip
    for row in floors:
        c = row.cost
        if c is None:
            continue
        ratio = f"{c.pss_mib / page.pss_mib:9.2f}x" if page else f"{'-':>10}"
        parts = ", ".join(f"{k} {v:.0f}" for k, v in list(c.pss_parts.items())[:2])
        print(f"| {row.name:<36} | {c.cpu_min:9.1f} | {c.pss_mib:8.0f} | {ratio} | {parts:<61} |")
    print(
        f"The booth's PSS can go no lower than its floor: with the screen, at least the "
        f"window's; 0.3x leaves {TARGET_MEM_RATIO * page.pss_mib:.0f} MiB here."
        if page
        else ""
    )
    print()


def main(plan: Plan | None = None) -> None:
    plan = plan or Plan()
    missing = [n for n, ok in (("chromium", CHROMIUM.exists()), ("Xvfb", shutil.which("Xvfb")))
               if not ok]  # fmt: skip
    if missing:
        print(f"Video call benchmark: not measured, needs {' and '.join(missing)} (`make apt`)")
        return
    rows, where = asyncio.run(run(plan))
    print_tables(rows, plan, where)


if __name__ == "__main__":
    if sys.argv[1:2] == ["booth"]:
        sys.exit(booth_main(sys.argv[2:]))
    if sys.argv[1:2] == ["floor"]:
        sys.exit(floor_main(sys.argv[2:]))
    main()

"""sd_notify, the event-loop watchdog and the journal handler, on real AF_UNIX sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import hardware.systemd as sd
from hardware.systemd import Notifier, Watchdog, journal_handler, watchdog_interval
from kiosk.logs import log_event

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- sockets


class Receiver:
    """A bound notify socket; a thread stamps each datagram as it arrives."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(0.01)
        self.got: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.got.append((time.monotonic(), data))

    def messages(self, wait: float = 0.1) -> list[bytes]:
        """Everything received, after a moment for the last datagrams to land."""
        time.sleep(wait)
        return [data for _, data in self.got]

    def times(self, message: bytes = b"WATCHDOG=1") -> list[float]:
        return [t for t, data in self.got if data == message]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A filesystem notify socket (short path: sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="sd") as tmp:
        path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        receiver = Receiver(sock)
        yield receiver
        receiver.close()


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A notify socket in the abstract namespace, given to systemd clients as ``@name``."""
    name = f"kiosk-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    receiver = Receiver(sock)
    yield receiver
    receiver.close()


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="kiosk.events")
    return caplog


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    return [
        r.kiosk_event  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "kiosk_event", {}).get("event") == name
    ]


# ---------------------------------------------------------------- notify


def test_without_notify_socket_everything_is_a_quiet_no_op(
    monkeypatch: pytest.MonkeyPatch, events: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert n.ready("up") is False
    assert n.status("idle") is False
    assert n.stopping() is False
    assert n.watchdog() is False
    assert not events.records


def test_notifications_arrive_on_a_real_socket(notify_socket: Receiver) -> None:
    n = Notifier()
    assert n.ready() is True
    assert n.ready("attract screen") is True
    assert n.status("in a visit") is True
    assert n.stopping() is True
    assert n.watchdog() is True
    assert notify_socket.messages() == [
        b"READY=1",
        b"READY=1\nSTATUS=attract screen",
        b"STATUS=in a visit",
        b"STOPPING=1",
        b"WATCHDOG=1",
    ]


def test_abstract_socket_name(abstract_socket: Receiver) -> None:
    n = Notifier()
    assert n.ready("up") and n.watchdog() and n.stopping()
    assert abstract_socket.messages() == [b"READY=1\nSTATUS=up", b"WATCHDOG=1", b"STOPPING=1"]


def test_status_text_cannot_smuggle_another_assignment(notify_socket: Receiver) -> None:
    n = Notifier()
    assert n.status("ok\nWATCHDOG=1") is True
    assert n.status("nul\0inside") is True
    assert n.status("x" * 1000) is True
    got = notify_socket.messages()
    assert got[:2] == [b"STATUS=ok WATCHDOG=1", b"STATUS=nul inside"]
    assert got[2] == b"STATUS=" + b"x" * 200


def test_socket_errors_return_false_and_are_logged(
    monkeypatch: pytest.MonkeyPatch, events: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    assert Notifier().watchdog() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "relative-path")
    assert Notifier().ready() is False
    assert logged(events, "notify_failed") == [
        {"event": "notify_failed", "what": "watchdog", "errno": 2},
        {"event": "notify_failed", "what": "ready", "errno": 22},
    ]


def test_twin_the_raw_library_call_raises_there(monkeypatch: pytest.MonkeyPatch) -> None:
    """What Notifier protects the booth from: systemd.daemon.notify raises OSError."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    with pytest.raises(OSError):
        sd.daemon.notify("WATCHDOG=1")


def test_missing_systemd_module_sends_nothing(
    notify_socket: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sd, "daemon", None)
    assert Notifier().ready() is False
    assert notify_socket.messages() == []


def test_import_without_systemd_python_degrades(tmp_path: Path) -> None:
    """A laptop without libsystemd: the module imports and every call is a no-op."""
    script = (
        "import sys, logging\n"
        "sys.modules['systemd'] = None\n"  # makes `import systemd...` fail
        "import hardware.systemd as sd\n"
        "assert sd.daemon is None and sd.journal is None\n"
        "n = sd.Notifier()\n"
        "assert not any([n.ready('x'), n.status('x'), n.stopping(), n.watchdog()])\n"
        "assert sd.journal_available() is False\n"
        "assert type(sd.journal_handler()) is logging.StreamHandler\n"
        "print('ok')\n"
    )
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


# ---------------------------------------------------------------- watchdog_interval


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("20000000", None, 10.0),
        ("20000000", "self", 10.0),
        ("20000000", "1", None),  # meant for another process
        ("200000", None, 0.1),
        ("0", None, None),
        ("-5", None, None),
        ("twenty", None, None),
        ("20000000", "nope", None),
    ],
)
def test_watchdog_interval_from_environment(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(os.getpid()) if value == "self" else value)
    assert watchdog_interval() == expected


def test_watchdog_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.new_event_loop()
    try:
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        assert Watchdog.from_environment(Notifier(), loop) is None
        monkeypatch.setenv("WATCHDOG_USEC", "300000")
        wd = Watchdog.from_environment(Notifier(), loop)
        assert wd is not None
        assert wd.interval == pytest.approx(0.15)
        assert wd.max_lag == wd.interval
    finally:
        loop.close()


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf")])
def test_watchdog_refuses_a_meaningless_interval(interval: float) -> None:
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="interval"):
            Watchdog(Notifier(), interval, loop)
    finally:
        loop.close()


# ---------------------------------------------------------------- Watchdog

INTERVAL = 0.05


async def run_watchdog(seconds: float, **kwargs: object) -> Watchdog:
    wd = Watchdog(Notifier(), INTERVAL, asyncio.get_running_loop(), **kwargs)  # type: ignore[arg-type]
    wd.start()
    await asyncio.sleep(seconds)
    await wd.stop()
    return wd


def test_pings_while_the_loop_is_free(notify_socket: Receiver) -> None:
    wd = asyncio.run(run_watchdog(0.5))
    got = notify_socket.messages()
    assert set(got) == {b"WATCHDOG=1"}
    assert 4 <= len(got) <= 11  # ideally 10
    assert wd.pings == len(got)


def test_no_pings_while_unhealthy(
    notify_socket: Receiver, events: pytest.LogCaptureFixture
) -> None:
    asyncio.run(run_watchdog(0.4, healthy=lambda: False))
    assert notify_socket.messages() == []
    # Logged once when the pings stop, not every round.
    assert logged(events, "watchdog_withheld") == [
        {"event": "watchdog_withheld", "reason": "unhealthy"}
    ]


def test_pings_resume_when_healthy_again(notify_socket: Receiver) -> None:
    well = [False]

    async def scenario() -> None:
        wd = Watchdog(Notifier(), INTERVAL, asyncio.get_running_loop(), healthy=lambda: well[0])
        wd.start()
        await asyncio.sleep(0.3)
        assert notify_socket.got == []
        well[0] = True
        await asyncio.sleep(0.3)
        await wd.stop()

    asyncio.run(scenario())
    assert len(notify_socket.messages()) >= 2


def test_a_raising_health_check_withholds_pings_but_keeps_the_task(
    notify_socket: Receiver, events: pytest.LogCaptureFixture
) -> None:
    def broken() -> bool:
        raise RuntimeError("check blew up")

    async def scenario() -> bool:
        wd = Watchdog(Notifier(), INTERVAL, asyncio.get_running_loop(), healthy=broken)
        wd.start()
        await asyncio.sleep(0.3)
        alive = wd.running
        await wd.stop()
        return alive

    assert asyncio.run(scenario()) is True
    assert notify_socket.messages() == []
    assert logged(events, "watchdog_withheld") == [
        {"event": "watchdog_withheld", "reason": "check_failed"}
    ]


@dataclass
class Block:
    """When the loop was blocked, by the monotonic clock."""

    start: float = 0.0
    end: float = 0.0
    pings: list[float] = field(default_factory=list)

    def during(self) -> list[float]:
        # Margin: a datagram sent just before the block may be stamped a little late.
        return [t for t in self.pings if self.start + INTERVAL / 2 < t < self.end]

    def before(self) -> list[float]:
        return [t for t in self.pings if t < self.start]

    def after(self) -> list[float]:
        return [t for t in self.pings if t > self.end]


def block_the_loop(
    receiver: Receiver,
    start_pinger: Callable[[asyncio.AbstractEventLoop], Callable[[], object]],
) -> Block:
    """Ping for a while, block the loop with time.sleep for 6 intervals, then run on."""
    block = Block()

    def blocker() -> None:
        block.start = time.monotonic()
        time.sleep(6 * INTERVAL)  # a synchronous call stuck on the loop
        block.end = time.monotonic()

    async def scenario() -> None:
        stop = start_pinger(asyncio.get_running_loop())
        await asyncio.sleep(5 * INTERVAL)
        asyncio.get_running_loop().call_soon(blocker)
        await asyncio.sleep(0)
        await asyncio.sleep(6 * INTERVAL)
        result = stop()
        if isinstance(result, asyncio.Future):
            await result

    asyncio.run(scenario())
    receiver.messages()
    block.pings = receiver.times()
    return block


def loop_watchdog(**kwargs: object) -> Callable[[asyncio.AbstractEventLoop], Callable[[], object]]:
    def start(loop: asyncio.AbstractEventLoop) -> Callable[[], object]:
        wd = Watchdog(Notifier(), INTERVAL, loop, **kwargs)  # type: ignore[arg-type]
        wd.start()
        return wd.stop

    return start


def thread_pinger(loop: asyncio.AbstractEventLoop) -> Callable[[], object]:
    """The unprotected design: pings from a thread, blind to the event loop."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(INTERVAL):
            Notifier().watchdog()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return lambda: (stop.set(), thread.join())


def test_a_blocked_loop_stops_the_pings_and_they_resume_after(
    notify_socket: Receiver, events: pytest.LogCaptureFixture
) -> None:
    block = block_the_loop(notify_socket, loop_watchdog())
    assert len(block.before()) >= 2
    assert block.during() == []
    assert len(block.after()) >= 2
    # The late wake-up itself does not ping: the first ping comes a full round later.
    assert block.after()[0] - block.end >= INTERVAL / 2
    lags = [e["lag_ms"] for e in logged(events, "watchdog_late")]
    assert all(isinstance(lag, int) for lag in lags)
    assert max(lags) >= 4 * INTERVAL * 1000  # (a busy CI box may add small late rounds)


def test_twin_a_thread_pinger_keeps_pinging_through_the_block(notify_socket: Receiver) -> None:
    """Without the loop-driven design the same scenario sees pings during the block."""
    block = block_the_loop(notify_socket, thread_pinger)
    assert len(block.during()) >= 2


def test_twin_without_the_lag_check_the_late_wake_up_pings_at_once(
    notify_socket: Receiver, events: pytest.LogCaptureFixture
) -> None:
    block = block_the_loop(notify_socket, loop_watchdog(max_lag=float("inf")))
    assert block.during() == []  # the loop still cannot run the task...
    assert block.after()[0] - block.end < INTERVAL / 2  # ...but it pings as soon as it wakes
    assert logged(events, "watchdog_late") == []


def test_stop_ends_the_pings_awaited_or_not(notify_socket: Receiver) -> None:
    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        wd = Watchdog(Notifier(), INTERVAL, loop)
        wd.start()
        wd.start()  # idempotent: still one task
        await asyncio.sleep(3 * INTERVAL)
        wd.stop()  # not awaited: the cancel alone stops it
        assert not wd.running
        await asyncio.sleep(0)
        sent = wd.pings
        await asyncio.sleep(4 * INTERVAL)
        await wd.stop()  # stopping again is harmless
        return sent, wd.pings

    sent, total = asyncio.run(scenario())
    assert sent == total >= 1
    assert len(notify_socket.messages()) == sent


def test_watchdog_without_notify_socket_runs_quietly(
    monkeypatch: pytest.MonkeyPatch, events: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    wd = asyncio.run(run_watchdog(0.2))
    assert wd.pings == 0
    assert logged(events, "notify_failed") == []


# ---------------------------------------------------------------- journal


def test_journal_handler_sends_the_event_fields_and_nothing_unchecked() -> None:
    sent: list[tuple[str, dict[str, object]]] = []
    handler = journal_handler(sender=lambda m, **f: sent.append((m, f)))
    events = logging.getLogger("kiosk.events")
    events.addHandler(handler)
    level, events.level = events.level, logging.INFO
    try:
        log_event("state_changed", state="in_call", previous="Maria Canary-7Q4")
    finally:
        events.removeHandler(handler)
        events.setLevel(level)
    [(message, fields)] = sent
    assert message == "state_changed state=in_call previous=<redacted>"
    assert fields["SYSLOG_IDENTIFIER"] == "telehealth-kiosk"
    assert fields["PRIORITY"] == "6"
    assert fields["KIOSK_EVENT"] == "state_changed"
    assert fields["KIOSK_STATE"] == "in_call"
    assert fields["KIOSK_PREVIOUS"] == "<redacted>"
    assert fields["CODE_FILE"] == __file__
    assert all(k.isupper() for k in fields)  # journald ignores the rest; never sent
    assert "7Q4" not in repr(sent)


def test_journal_available_needs_the_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sd, "JOURNAL_SOCKET", str(tmp_path / "socket"))
    assert sd.journal_available() is False
    (tmp_path / "socket").touch()
    assert sd.journal_available() is True
    monkeypatch.setattr(sd, "journal", None)
    assert sd.journal_available() is False

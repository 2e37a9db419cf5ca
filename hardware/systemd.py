"""systemd integration: readiness, status and watchdog notifications, and the journal.

On a booth, systemd starts the kiosk as a ``Type=notify`` service with
``WatchdogSec=``: the booth says when it is ready and then keeps pinging, and
systemd restarts it if the pings stop. Everything here is a quiet no-op when
there is no systemd to talk to (``NOTIFY_SOCKET`` unset, or systemd-python
not installed on a developer laptop), so the same code runs everywhere.

The watchdog pings come from a task on the booth's own event loop, so a loop
stuck in a blocking call cannot ping: the hang is what systemd sees.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from kiosk.logs import EVENT_ATTR, log_event

# ``from systemd import daemon, journal``, spelled so that the repository's own
# ``systemd/`` folder of unit files is never mistaken for the package by mypy.
daemon: Any
journal: Any
try:
    daemon = importlib.import_module("systemd.daemon")
    journal = importlib.import_module("systemd.journal")
except ImportError:  # a laptop without libsystemd: every call below degrades to a no-op
    daemon = journal = None

SYSLOG_IDENTIFIER = "telehealth-kiosk"
JOURNAL_SOCKET = "/run/systemd/journal/socket"
_STATUS_MAX = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _clean(text: str) -> str:
    """One line, no NUL: a newline in a status would smuggle in another assignment."""
    return _CONTROL.sub(" ", text)[:_STATUS_MAX]


class Notifier:
    """Tells systemd about the booth's life (``sd_notify``); never raises.

    Each method returns True when the message was sent, False when there is no
    systemd to tell or sending failed (logged as ``notify_failed``). Status
    texts are fixed technician-facing words, never resident data.
    """

    def _send(self, what: str, message: str) -> bool:
        if daemon is None or not os.environ.get("NOTIFY_SOCKET"):
            return False
        try:
            return bool(daemon.notify(message))
        except OSError as exc:
            log_event("notify_failed", what=what, errno=exc.errno)
            return False
        except ValueError:  # unreachable after _clean; kept so notify can never raise
            log_event("notify_failed", what=what)
            return False

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete: ``systemctl start`` returns and units after the booth start."""
        message = "READY=1" if status is None else f"READY=1\nSTATUS={_clean(status)}"
        return self._send("ready", message)

    def status(self, text: str) -> bool:
        """Set the one-line status ``systemctl status`` shows a technician."""
        return self._send("status", f"STATUS={_clean(text)}")

    def stopping(self) -> bool:
        """Shutting down on purpose: systemd shows the booth as stopping, not as hung."""
        return self._send("stopping", "STOPPING=1")

    def watchdog(self) -> bool:
        """Still alive: resets systemd's ``WatchdogSec=`` timer."""
        return self._send("watchdog", "WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between pings (half of ``WATCHDOG_USEC``), or None when not supervised.

    ``WATCHDOG_PID`` names the process systemd watches; a child that inherited
    the variables must not ping on its parent's behalf.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID")
    try:
        if pid is not None and int(pid) != os.getpid():
            return None
        value = int(usec)
    except ValueError:
        return None
    if value <= 0:
        return None
    return value / 2_000_000


class Watchdog:
    """Pings systemd from the event loop, only while the loop and the booth are well.

    Every ``interval`` seconds the task wakes up and measures how late it woke.
    A wake-up late by ``max_lag`` or more means the loop was blocked: that round
    sends nothing and logs ``watchdog_late``. Otherwise it pings if
    ``healthy()`` (when given) returns True; a False or a raising check withholds
    the ping and logs ``watchdog_withheld`` once per change.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float,
        loop: asyncio.AbstractEventLoop,
        healthy: Callable[[], bool] | None = None,
        max_lag: float | None = None,
    ) -> None:
        if not (interval > 0 and math.isfinite(interval)):
            raise ValueError(
                f"watchdog interval must be a positive number of seconds, not {interval!r}"
            )
        self.notifier = notifier
        self.interval = float(interval)
        self.max_lag = self.interval if max_lag is None else float(max_lag)
        self.healthy = healthy
        self.pings = 0
        self._loop = loop
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_environment(
        cls,
        notifier: Notifier,
        loop: asyncio.AbstractEventLoop,
        healthy: Callable[[], bool] | None = None,
    ) -> Watchdog | None:
        """A watchdog at the interval systemd asked for, or None when not supervised."""
        interval = watchdog_interval()
        return None if interval is None else cls(notifier, interval, loop, healthy)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start pinging (idempotent). Call from the loop's thread."""
        if not self.running:
            self._task = self._loop.create_task(self._run(), name="systemd-watchdog")

    def stop(self) -> asyncio.Future[None]:
        """Stop pinging now; await the result to know the task has finished."""
        done: asyncio.Future[None] = self._loop.create_future()
        task, self._task = self._task, None
        if task is None or task.done():
            done.set_result(None)
            return done

        def finished(_: asyncio.Task[None]) -> None:
            if not done.done():
                done.set_result(None)

        task.add_done_callback(finished)
        task.cancel()
        return done

    def _withhold_reason(self) -> str | None:
        if self.healthy is None:
            return None
        try:
            return None if self.healthy() else "unhealthy"
        except Exception:  # a broken check must not kill the pinger; it just means "not well"
            return "check_failed"

    async def _run(self) -> None:
        withheld: str | None = None
        while True:
            due = self._loop.time() + self.interval
            await asyncio.sleep(self.interval)
            lag = self._loop.time() - due
            if lag >= self.max_lag:
                log_event("watchdog_late", lag_ms=int(lag * 1000))
                continue
            reason = self._withhold_reason()
            if reason is None:
                if self.notifier.watchdog():
                    self.pings += 1
            elif reason != withheld:
                log_event("watchdog_withheld", reason=reason)
            withheld = reason


# ---------------------------------------------------------------- journal

_JOURNAL_FIELD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def _journal_sender(send: Callable[..., object]) -> Callable[..., object]:
    """Wrap ``journal.send``: keep valid journal fields, add the event's as KIOSK_*.

    JournalHandler passes every LogRecord attribute along; journald ignores the
    lower-case ones, so they are dropped here and the checked event fields are
    added in a form ``journalctl KIOSK_EVENT=state_changed`` can select on.
    """

    def sender(message: str, /, **fields: object) -> object:
        event = fields.get(EVENT_ATTR)
        kept = {k: v for k, v in fields.items() if _JOURNAL_FIELD.fullmatch(k)}
        if isinstance(event, dict):
            for key, value in event.items():
                name = f"KIOSK_{key.upper()}"
                if isinstance(key, str) and _JOURNAL_FIELD.fullmatch(name):
                    kept[name] = value
        return send(message, **kept)

    return sender


def journal_available() -> bool:
    """True when systemd-python is installed and journald's socket is there to receive."""
    return journal is not None and os.path.exists(JOURNAL_SOCKET)


def journal_handler(sender: Callable[..., object] | None = None) -> logging.Handler:
    """A handler writing to the journal as ``telehealth-kiosk``.

    Without systemd-python it falls back to stderr, which systemd also puts in
    the journal, rather than losing the logs. ``sender`` replaces
    ``journal.send`` (tests).
    """
    if journal is None:
        return logging.StreamHandler(sys.stderr)
    handler: logging.Handler = journal.JournalHandler(
        sender_function=_journal_sender(sender or journal.send),
        SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER,
    )
    return handler

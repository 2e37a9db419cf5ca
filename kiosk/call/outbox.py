"""The emergency alerts not yet received by the hub, kept on disk across a restart.

An alert raised while the hub is unreachable must reach it later even if the
booth restarts in between (a crash, a power cut, an update). The file holds
only what the ``alert`` messages hold: the booth's id, an alert id, the time
and the site's address from the booth's own config; nothing of a visit.

Written whole and atomically (a temporary file, fsync, rename, fsync of the
folder), so a power cut leaves the old list or the new one, never neither.
A file that cannot be read is set aside (renamed ``.bad``) rather than
trusted or silently dropped, and the booth carries on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from clinic import protocol
from clinic.protocol import Alert, BadMessage

_log = logging.getLogger(__name__)

FILE_NAME = "alert-outbox.json"
MAX_BYTES = 1024 * 1024


class OutboxFile:
    """One JSON file: a list of ``alert`` messages, oldest first."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Alert]:
        """The alerts kept by an earlier run, by alert id; {} when there are none."""
        try:
            raw = self.path.read_bytes()[: MAX_BYTES + 1]
        except FileNotFoundError:
            return {}
        except OSError as exc:
            _log.error("alert outbox %s cannot be read (%s)", self.path, exc.strerror)
            return {}
        try:
            if len(raw) > MAX_BYTES:
                raise ValueError("too big")
            items = json.loads(raw)
            if not isinstance(items, list):
                raise ValueError("not a list")
            alerts: dict[str, Alert] = {}
            for item in items:
                message = protocol.parse(json.dumps(item), sender="booth")
                if not isinstance(message, Alert):
                    raise ValueError(f"holds a {message.TYPE}")
                alerts[message.alert_id] = message
        except (ValueError, BadMessage, RecursionError) as exc:
            kind = exc.code.value if isinstance(exc, BadMessage) else type(exc).__name__
            _log.error("alert outbox %s is damaged (%s); set aside as .bad", self.path, kind)
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_suffix(".bad"))
            return {}
        if alerts:
            _log.warning("%d alert(s) from before a restart are still to be sent", len(alerts))
        return alerts

    def save(self, alerts: list[Alert]) -> None:
        """Replace the file with ``alerts``, atomically; remove it when there are none."""
        if not alerts:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
                _fsync_dir(self.path.parent)
            return
        data = "[" + ",".join(protocol.encode(a) for a in alerts) + "]"
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

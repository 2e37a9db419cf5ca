"""The booth's status file: how the updater knows the booth is idle, and that it came up healthy.

The booth writes ``/run/telehealth-kiosk/status.json`` (its RuntimeDirectory)
with :func:`write_status` whenever its state changes::

    {"version": "1.4.0", "activity": "idle", "ready": true, "self_check": "pass"}

- ``version``: the release the running booth was installed as;
- ``activity``: ``idle`` (nobody inside), ``visit`` (a resident, from the door
  opening to the wipe), ``emergency``, ``technician``, ``starting``, or
  ``held`` (between visits, holding the switch off for the updater: see below);
- ``ready``: true from the moment it sent ``READY=1`` to systemd;
- ``self_check``: ``pass``, ``fail`` or ``pending`` (its start-up self-check).

The updater switches releases only when ``activity`` is ``idle``, and calls a
new release healthy only when a status file written by *that* version says
ready and ``pass`` (it deletes the old file before restarting the booth, so a
stale one can never pass the gate). No personal data is ever in it.

The hold (closing the race between "idle" and the restart): when ready to
switch, the updater writes ``/run/telehealth-kiosk-update/update-hold``
(``{"version": "<new>", "at": <unix time>}``) and waits up to a minute for the
booth to say ``held``. The booth says so only between visits, and then shows
its "updating" screen (911/988 still on it) instead of starting a visit. The
updater restarts the booth only if the status still says ``held`` just before
the restart (an emergency turns it into ``emergency``: the switch is undone);
it removes the file on every way out, and the booth returns to normal when
the file is gone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from provisioning.update.fsio import write_atomic

ACTIVITIES: Final = ("idle", "visit", "emergency", "technician", "starting", "held")
SELF_CHECKS: Final = ("pass", "fail", "pending")
MAX_BYTES: Final = 4096


@dataclass(frozen=True)
class BoothStatus:
    version: str
    activity: str
    ready: bool
    self_check: str

    @property
    def idle(self) -> bool:
        return self.activity == "idle"

    @property
    def between_visits(self) -> bool:
        """Idle, or already holding the switch off (nobody inside either way)."""
        return self.activity in ("idle", "held")

    def healthy_as(self, version: str) -> bool:
        """The health gate: this version is running, told systemd READY=1 and passed its check."""
        return self.version == version and self.ready and self.self_check == "pass"


def write_status(path: Path, status: BoothStatus) -> None:
    """Replace the status file atomically (the updater never reads half of one)."""
    if status.activity not in ACTIVITIES or status.self_check not in SELF_CHECKS:
        raise ValueError(f"not a booth status: {status}")
    write_atomic(path, json.dumps(asdict(status)).encode() + b"\n")


def read_status(path: Path) -> BoothStatus | None:
    """The booth's last status, or None when there is none (not started, or unreadable)."""
    try:
        with path.open("rb") as f:
            data = json.loads(f.read(MAX_BYTES + 1))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    version, activity = data.get("version"), data.get("activity")
    ready, check = data.get("ready"), data.get("self_check")
    if (
        not isinstance(version, str)
        or activity not in ACTIVITIES
        or not isinstance(ready, bool)
        or check not in SELF_CHECKS
    ):
        return None
    return BoothStatus(version, str(activity), ready, str(check))

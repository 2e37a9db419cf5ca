"""The booth's side of a technician's USB bundle: hear what the stage service found, ask to apply.

The booth runs unprivileged and can neither mount a stick nor write its own
configuration. A root service started by udev for each USB stick
(``kiosk-provision bundle stage``) mounts it read-only, verifies the bundle
against the fleet's provisioning keys and writes ``status.json`` into the
bundle run folder; the booth reads that and tells the visit
(:class:`BundleNews`), which shows "a technician's USB stick is in the booth"
between visits. Applying needs the technician PIN (technician mode); the
booth then only drops an ``apply-request`` file, and another root service
applies exactly what was verified (the one the technician saw, named by
its status's time in the request) and restarts the booth.

``status.json`` is input from another process: it is size-capped and every
field is checked; anything odd is ignored with a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from kiosk.session import BundleNews, BundleState

_log = logging.getLogger(__name__)

RUN_DIR: Final = Path("/run/telehealth-kiosk-bundle")
"""Where the stage service writes (``BUNDLE_DIRECTORY`` overrides it, for the simulator)."""
STATUS: Final = "status.json"
REQUEST: Final = "requests/apply-request"
"""Under the run folder; ``requests/`` is the one place there the booth may write."""
MAX_STATUS_BYTES: Final = 16 * 1024
STAGE_WAIT: Final = 20.0
"""Seconds after a stick is plugged in to wait for the stage service's word."""
POLL: Final = 0.5

_STATES: Final = {s.value: s for s in (BundleState.READY, BundleState.REFUSED, BundleState.FAILED)}


@dataclass(frozen=True)
class StageStatus:
    """What the stage service wrote: the state, its reason, and what the bundle holds."""

    state: BundleState
    reason: str
    summary: str
    at: float


def parse_status(raw: bytes) -> StageStatus | None:
    """``status.json`` as a :class:`StageStatus`; None for anything not plainly one."""
    if len(raw) > MAX_STATUS_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    state = _STATES.get(str(data.get("state")))
    at = data.get("at")
    if state is None or not isinstance(at, int | float) or isinstance(at, bool):
        return None
    reason = data.get("reason")
    summary = data.get("summary")
    words = []
    if isinstance(summary, dict):
        booth, site = summary.get("booth_id"), summary.get("site")
        if isinstance(booth, str) and booth:
            words.append(f"booth {booth[:64]}")
        if isinstance(site, str) and site:
            words.append(f"site {site[:100]}")
        if summary.get("wifi") is True:
            words.append("Wi-Fi settings")
        if summary.get("enrollment_code") is True:
            words.append("an enrollment code")
    return StageStatus(
        state,
        reason[:300] if isinstance(reason, str) else "",
        ", ".join(words) or "configuration",
        float(at),
    )


def run_dir() -> Path:
    return Path(os.environ.get("BUNDLE_DIRECTORY") or RUN_DIR)


class StagedBundles:
    """Reads the stage service's status and hands apply requests to the apply service."""

    def __init__(
        self,
        post: Callable[[BundleNews], None],
        folder: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._post = post
        self.folder = folder or run_dir()
        self._clock = clock
        self.status: StageStatus | None = None
        """The latest status the booth acted on (its reason and summary go on the screen)."""

    def read(self) -> StageStatus | None:
        try:
            with (self.folder / STATUS).open("rb") as f:
                raw = f.read(MAX_STATUS_BYTES + 1)
        except OSError:
            return None
        status = parse_status(raw)
        if status is None:
            _log.warning("bundle: %s is not a status the booth understands; ignored", STATUS)
        return status

    def at_start(self) -> None:
        """A bundle staged before the booth (re)started is still offered."""
        status = self.read()
        if status is not None and status.state is BundleState.READY:
            self._tell(status)

    async def after_insert(self, since: float | None = None) -> None:
        """A stick came: wait for the stage service's word about it (a stick without one: none)."""
        since = self._clock() - 1.0 if since is None else since
        deadline = asyncio.get_running_loop().time() + STAGE_WAIT
        while asyncio.get_running_loop().time() < deadline:
            status = self.read()
            if status is not None and status.at >= since:
                self._tell(status)
                return
            await asyncio.sleep(POLL)

    def _tell(self, status: StageStatus) -> None:
        self.status = status
        self._post(BundleNews(status.state))

    async def request_apply(self) -> bool:
        """Drop the request the apply service waits for; False (and logged) if it cannot be."""
        path = self.folder / REQUEST
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o660)
            try:
                # The bundle the technician saw: the apply service refuses another one.
                seen = self.status.at if self.status is not None else None
                os.write(fd, json.dumps({"bundle_at": seen}).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _log.warning("bundle: could not ask for the apply (%s)", type(exc).__name__)
            if self.status is not None:
                self.status = StageStatus(
                    BundleState.FAILED,
                    f"the booth could not write {path} ({exc.strerror or type(exc).__name__})",
                    self.status.summary,
                    self.status.at,
                )
            return False
        return True

"""Where an installed booth keeps everything, under one root so tests can use a temporary one.

This is the contract between ``kiosk-provision install`` (which lays it out),
the updater (which adds releases and switches ``current``) and the systemd
units (which run ``current/bin/telehealth-kiosk``)::

    /opt/telehealth-kiosk/
        releases/<version>/        one virtual environment per release, never changed once made
        current -> releases/<version>   replaced only by an atomic rename of a new link
    /etc/telehealth-kiosk/booth.toml    the booth's configuration (kiosk-provision init)
    /etc/telehealth-kiosk/hub-credential  the booth's hub credential (kiosk-provision enroll)
    /etc/telehealth-kiosk/booth-key.pem   the booth's own Ed25519 private key, 0600 (enroll)
    /var/lib/telehealth-kiosk/          the booth service's StateDirectory= (alert outbox)
    /var/lib/telehealth-kiosk-update/   the updater's own state (TUF metadata, version floor)

Every path is ``root`` joined with the absolute path above; ``root`` is ``/``
on a booth and a temporary folder under ``--root`` in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

APP_DIR: Final = Path("/opt/telehealth-kiosk")
CONFIG_DIR: Final = Path("/etc/telehealth-kiosk")
STATE_DIR: Final = Path("/var/lib/telehealth-kiosk")
UPDATE_STATE_DIR: Final = Path("/var/lib/telehealth-kiosk-update")
RUN_DIR: Final = Path("/run/telehealth-kiosk")
"""The booth service's RuntimeDirectory=: its status file for the updater (idle? healthy?)."""
UNIT_DIR: Final = Path("/etc/systemd/system")
USER: Final = "kiosk"
"""The unprivileged account the booth runs as."""
EC_SOURCE: Final = "telehealth_ec_source"
"""PipeWire node the booth records from: the microphone with the speaker's sound removed."""
EC_SINK: Final = "telehealth_ec_sink"
"""PipeWire node the booth plays the call to, so it can be cancelled from the microphone."""
RELEASE_MARKER: Final = "telehealth-release.json"
"""Written last into ``releases/<version>/``: a release folder without it is unfinished."""


@dataclass(frozen=True)
class Layout:
    """The installed booth's paths below ``root``."""

    root: Path = Path("/")

    def _at(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    @property
    def app(self) -> Path:
        return self._at(APP_DIR)

    @property
    def releases(self) -> Path:
        return self.app / "releases"

    def release(self, version: str) -> Path:
        """The folder (a virtual environment) of one release."""
        return self.releases / version

    @property
    def current(self) -> Path:
        """The link naming the running release; the units start ``current/bin/telehealth-kiosk``."""
        return self.app / "current"

    @property
    def config_dir(self) -> Path:
        return self._at(CONFIG_DIR)

    @property
    def config(self) -> Path:
        return self.config_dir / "booth.toml"

    @property
    def credential(self) -> Path:
        return self.config_dir / "hub-credential"

    @property
    def identity_key(self) -> Path:
        """The booth's own private key, readable by the booth's user only (0600)."""
        return self.config_dir / "booth-key.pem"

    @property
    def state(self) -> Path:
        return self._at(STATE_DIR)

    @property
    def update_state(self) -> Path:
        return self._at(UPDATE_STATE_DIR)

    @property
    def runtime(self) -> Path:
        return self._at(RUN_DIR)

    @property
    def booth_status(self) -> Path:
        """Written by the booth, read by the updater (see provisioning.update.booth_status)."""
        return self.runtime / "status.json"

    @property
    def units(self) -> Path:
        return self._at(UNIT_DIR)

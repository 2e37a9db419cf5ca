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
    /etc/telehealth-kiosk/provisioning-keys/*.pub  the fleet's provisioning keys USB bundles
                                        must be signed with (install --provisioning-key)
    /run/telehealth-kiosk-bundle/       2750 root:kiosk (tmpfiles): USB bundles, staged by root
        status.json                     0640, root writes, the booth reads (see bundle_status)
        pending/bundle.tar              0700/0600 root only: the verified bundle, until applied
        requests/apply-request          requests/ is 0770 root:kiosk: the booth creates it

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
BUNDLE_RUN_DIR: Final = Path("/run/telehealth-kiosk-bundle")
UPDATE_RUN_DIR: Final = Path("/run/telehealth-kiosk-update")
"""The updater's RuntimeDirectory= (root's, readable by all): its hold request to the booth.
Not the booth's own run folder: the updater runs as root without capabilities, so it
cannot write into a folder the kiosk user owns; and this folder, with the hold in it,
goes away by itself when an updater run ends, however it ends."""
"""Made at boot by systemd/tmpfiles-telehealth-kiosk-bundle.conf (2750 root:kiosk, setgid so
every file root writes there is group kiosk); the booth service needs
``ReadWritePaths=/run/telehealth-kiosk-bundle/requests`` to make its request."""
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
    def update_state_file(self) -> Path:
        """The updater's ``state.json`` (0644, folder 0755, no secrets): the booth reads
        ``alert`` from it to raise the update-blocked staff alert (fields: docs/updates.md)."""
        return self.update_state / "state.json"

    @property
    def runtime(self) -> Path:
        return self._at(RUN_DIR)

    @property
    def booth_status(self) -> Path:
        """Written by the booth, read by the updater (see provisioning.update.booth_status)."""
        return self.runtime / "status.json"

    @property
    def update_hold(self) -> Path:
        """Written by the updater (JSON ``{"version": str, "at": unix_time}``) when it is ready
        to switch; the booth answers ``"activity": "held"`` between visits and returns to
        normal once the file is gone (see provisioning.update.booth_status)."""
        return self._at(UPDATE_RUN_DIR) / "update-hold"

    @property
    def units(self) -> Path:
        return self._at(UNIT_DIR)

    @property
    def provisioning_keys(self) -> Path:
        """The trusted provisioning public keys (``*.pub``) that USB bundles must be signed by."""
        return self.config_dir / "provisioning-keys"

    @property
    def bundle_run(self) -> Path:
        """Where root's stage and apply units and the booth exchange a USB bundle."""
        return self._at(BUNDLE_RUN_DIR)

    @property
    def bundle_status(self) -> Path:
        """JSON written atomically by root (0640, group kiosk), read by the booth::

            {"state": "ready" | "refused" | "applied" | "failed",
             "reason": str | null,          one line for the technician: why refused/failed
             "stick": "sda1",
             "summary": {"booth_id": str | null, "site": str | null,
                         "wifi": bool, "enrollment_code": bool},
             "at": unix_time}

        "ready": verified and staged, nothing applied yet.
        """
        return self.bundle_run / "status.json"

    @property
    def bundle_pending(self) -> Path:
        """Root only (0700): the verified bundle's bytes, checked again when applied."""
        return self.bundle_run / "pending"

    @property
    def bundle_staged(self) -> Path:
        return self.bundle_pending / "bundle.tar"

    @property
    def bundle_requests(self) -> Path:
        """0770 root:kiosk: the one place under ``bundle_run`` the booth may write."""
        return self.bundle_run / "requests"

    @property
    def bundle_apply_request(self) -> Path:
        """The booth creates this (any content, or none) once the technician PIN was right;
        telehealth-kiosk-bundle-apply.path then starts the root apply service."""
        return self.bundle_requests / "apply-request"

"""Signed automatic updates: the maintainer's publishing tools and the booth's updater.

The pieces, each in its own module:

- :mod:`.publish` makes and signs a TUF repository of release bundles
  (``kiosk-provision release ...``); the repository is plain files any static
  web server can host.
- :mod:`.bundle` packs a release (the project's wheel, every dependency's
  wheel, a manifest and the trust files) and installs one into
  ``releases/<version>`` offline.
- :mod:`.updater` is the booth's side (``python -m provisioning.update run``,
  started by ``telehealth-kiosk-update.timer``): it fetches through
  python-tuf's ngclient, installs beside the running release, switches
  ``current`` atomically when the booth is idle inside the maintenance window,
  and rolls back a release that fails the health gate.
- :mod:`.booth_status` is the small file through which the booth tells the
  updater whether it is idle and whether it came up healthy.
- :mod:`.fsio` holds the crash-safe file operations every write goes through.

Errors::

    KioskError
    └── UpdateError            anything the publisher or updater refuses or cannot do
"""

from __future__ import annotations

from kiosk.errors import KioskError


class UpdateError(KioskError):
    """A release, repository, key or update step was refused; the message says why and where."""

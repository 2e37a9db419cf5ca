"""``python -m provisioning.update run``: what telehealth-kiosk-update.service starts."""

from __future__ import annotations

import sys

from provisioning.update.cli import main

if __name__ == "__main__":
    sys.exit(main())

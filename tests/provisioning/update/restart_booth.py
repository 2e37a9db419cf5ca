"""The tests' restart hook: start ROOT's current release (it writes its status and exits).

Stands in for ``systemctl restart telehealth-kiosk.service``; every restart is
counted in ROOT/restarts.log.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

root = Path(sys.argv[1])
with (root / "restarts.log").open("a") as log:
    log.write(os.readlink(root / "opt/telehealth-kiosk/current") + "\n")
env = dict(os.environ, FAKE_BOOTH_STATUS=str(root / "run/telehealth-kiosk/status.json"))
sys.exit(
    subprocess.run(
        [str(root / "opt/telehealth-kiosk/current/bin/telehealth-kiosk")], env=env
    ).returncode
)

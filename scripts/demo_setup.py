"""Prepare a hub and a booth that know each other, in .demo/, for `make demo`.

Idempotent: the hub's database, its self-signed certificate, the demo
clinician, the booth and its credential are made once and reused. The
booth's configuration is examples/demo-booth.toml with this hub's address,
certificate fingerprint and credential file filled in. Prints the booth
configuration's path.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from clinic.server import dev_certificate
from clinic.store import Store

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BOOTH_TEMPLATE = ROOT / "examples" / "demo-booth.toml"
PORT = int(os.environ.get("DEMO_HUB_PORT", "8443"))
CLINICIAN = "demo"
PASSWORD = "demo-clinician-1"  # printed by `make demo`; a laptop demo only
BOOTH_ID = "demo-booth-1"


def main() -> int:
    DEMO.mkdir(mode=0o700, exist_ok=True)
    _, _, fingerprint = dev_certificate(DEMO / "dev-tls")
    credential = DEMO / "hub-credential"
    with Store(DEMO / "hub.sqlite3") as store:
        if store.clinician(CLINICIAN) is None:
            store.add_clinician(CLINICIAN, PASSWORD, "Demo Clinician")
        if store.booth(BOOTH_ID) is None or not credential.exists():
            if store.booth(BOOTH_ID) is None:
                token = store.add_booth(
                    BOOTH_ID,
                    name="Demo Booth",
                    site="Riverside Demo Site",
                    address="100 Example Street, Riverside, CA 92501",
                    room="Demo room",
                )
            else:
                token = store.rotate_booth_credential(BOOTH_ID)
            fd = os.open(credential, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
    text = BOOTH_TEMPLATE.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^url = ".*"$', f'url = "wss://localhost:{PORT}/booth"', text)
    text = re.sub(
        r'(?m)^certificate_sha256 = ".*"$',
        f'certificate_sha256 = "{fingerprint}"\ncredential_file = "{credential}"',
        text,
    )
    booth = DEMO / "booth.toml"
    booth.write_text(text, encoding="utf-8")
    print(booth)
    return 0


if __name__ == "__main__":
    sys.exit(main())

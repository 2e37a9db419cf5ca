"""The project end-to-end test's restart hook: stop the booth it started last, then start
ROOT's current release for real (``--simulate --headless``), like systemd would.

The booth writes its status file into RUNTIME_DIRECTORY (ROOT/run/telehealth-kiosk)
and keeps running; its pid is kept in ROOT/booth.pid for the next restart and the
test's cleanup. Usage: restart_real_booth.py ROOT CONFIG
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

root, config = Path(sys.argv[1]), sys.argv[2]
pid_file = root / "booth.pid"
with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
    old = int(pid_file.read_text())
    os.kill(old, signal.SIGTERM)
    for _ in range(100):  # like systemctl restart: the old one is gone first
        os.kill(old, 0)
        time.sleep(0.05)
with (root / "restarts.log").open("a") as log:
    log.write(os.readlink(root / "opt/telehealth-kiosk/current") + "\n")
run_dir = root / "run/telehealth-kiosk"
run_dir.mkdir(parents=True, exist_ok=True)
env = dict(
    os.environ,
    RUNTIME_DIRECTORY=str(run_dir),
    UPDATE_HOLD_FILE=str(root / "run/telehealth-kiosk-update/update-hold"),
)
# A headless booth reads simulator commands on stdin and stops at its end; a FIFO
# opened for reading and writing never ends, so it runs on as a service would.
fifo = root / "booth.stdin"
if not fifo.exists():
    os.mkfifo(fifo)
stdin = os.open(fifo, os.O_RDWR)
booth = subprocess.Popen(
    [str(root / "opt/telehealth-kiosk/current/bin/telehealth-kiosk"), "--simulate", "--headless",
     "--config", config],
    env=env, stdin=stdin, stdout=(root / "booth.log").open("ab"), stderr=subprocess.STDOUT,
    start_new_session=True,
)  # fmt: skip
pid_file.write_text(str(booth.pid))

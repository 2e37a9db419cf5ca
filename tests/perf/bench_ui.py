"""Touchscreen cost and speed (draft)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "examples" / "demo-booth.toml"
SHIPPED_MAXFPS = 20
IDLE_MAXFPS = (10, 20, 30)
SETTLE_S = 3.0
IDLE_S = 10.0
TARGET_PCT = 1.0
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far, from /proc/PID/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5)


@contextlib.contextmanager
def _xvfb() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    try:
        with os.fdopen(read) as f:
            number = f.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}", proc
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(sock: socket.socket, booth: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if booth.poll() is not None:
            raise RuntimeError(f"the booth exited with {booth.returncode} before READY=1")
        sock.settimeout(0.2)
        try:
            if "READY=1" in sock.recv(4096).decode().split("\n"):
                return
        except TimeoutError:
            continue
    raise RuntimeError(f"no READY=1 within {seconds} s")


def _idle(display: str, xvfb: subprocess.Popen[bytes], maxfps: int, tmp: Path) -> tuple[float, float]:
    text = CONFIG.read_text()
    text, n = re.subn(r"(?m)^maxfps = \d+$", f"maxfps = {maxfps}", text)
    if n != 1:
        raise RuntimeError(f"{CONFIG} has no single 'maxfps = N' line")
    cfg = tmp / f"booth-{maxfps}.toml"
    cfg.write_text(text)
    notify = tmp / f"notify-{maxfps}"
    env = {
        **os.environ,
        "DISPLAY": display,
        "NOTIFY_SOCKET": str(notify),
        "KIVY_HOME": str(tmp / "kivy"),
        "WATCHDOG_USEC": "20000000",  # as systemd/telehealth-kiosk.service: WatchdogSec=20
    }
    env.pop("SDL_VIDEODRIVER", None)
    env.pop("WATCHDOG_PID", None)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        booth = subprocess.Popen(
            [sys.executable, "-m", "kiosk", "--simulate", "--config", str(cfg)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(sock, booth, 30)
            time.sleep(SETTLE_S)
            b0, x0, t0 = _cpu_seconds(booth.pid), _cpu_seconds(xvfb.pid), time.monotonic()
            time.sleep(IDLE_S)
            b1, x1, t1 = _cpu_seconds(booth.pid), _cpu_seconds(xvfb.pid), time.monotonic()
            if booth.poll() is not None:
                raise RuntimeError("the booth exited while idle")
        finally:
            _stop(booth)
    wall = t1 - t0
    return 100 * (b1 - b0) / wall, 100 * (x1 - x0) / wall


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as d, _xvfb() as (display, xvfb):
        for fps in IDLE_MAXFPS:
            print(fps, _idle(display, xvfb, fps, Path(d)))


if __name__ == "__main__":
    main()

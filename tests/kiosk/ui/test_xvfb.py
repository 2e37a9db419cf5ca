"""K1 with real key events: the booth's window under Xvfb, keys sent by xdotool.

Only the booth's own handling is tested here: Xvfb has no window manager, so
Alt+Tab and Alt+F4 reach the app as plain key presses, which is exactly what
the booth must ignore. The booth reports its state to systemd (``STATUS=``)
on a socket the test owns, so the test sees every change of screen.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "examples" / "demo-booth.toml"
KEYS = [
    "Escape",
    "alt+F4",
    "ctrl+q",
    "ctrl+w",
    "F1",
    "F11",
    "F12",
    "alt+Tab",
    "super",
    "ctrl+alt+F2",
]

pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")),
    reason="needs Xvfb and xdotool: `make test` installs them (apt xvfb xdotool)",
)


@pytest.fixture
def xserver() -> Iterator[str]:
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1400x900x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    try:
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _statuses(sock: socket.socket, seconds: float, until: str = "") -> list[str]:
    """Notify messages for ``seconds``, or until one equals ``until``."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            out += [m for m in sock.recv(4096).decode().split("\n") if m]
        except TimeoutError:
            break
        if until and until in out:
            break
    return out


def _xdotool(display: str, *args: str) -> str:
    return subprocess.run(
        ["xdotool", *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    ).stdout.strip()


def test_real_keys_never_leave_the_booth(xserver: str, tmp_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        env = {
            **os.environ,
            "DISPLAY": xserver,
            "NOTIFY_SOCKET": str(tmp_path / "notify"),
            "KIVY_HOME": str(tmp_path / "kivy"),
        }
        env.pop("SDL_VIDEODRIVER", None)
        booth = subprocess.Popen(
            [sys.executable, "-m", "kiosk", "--simulate", "--config", str(CONFIG)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            seen = _statuses(sock, 30, until="READY=1")
            assert "READY=1" in seen, seen
            window = ""
            for _ in range(50):
                try:
                    window = _xdotool(xserver, "search", "--onlyvisible", "--class", ".").split()[0]
                    break
                except (subprocess.CalledProcessError, IndexError):
                    time.sleep(0.2)
            assert window, "the booth's window never appeared"
            time.sleep(1.0)
            _xdotool(xserver, "windowmove", "--sync", window, "0", "0")
            _xdotool(xserver, "mousemove", "--window", window, "500", "300", "click", "1")
            started = _statuses(sock, 5, until="STATUS=notice")
            assert "STATUS=notice" in started, "a touch on the attract screen starts a visit"
            for key in KEYS:
                _xdotool(xserver, "key", "--window", window, key)
            after = _statuses(sock, 2)
            assert booth.poll() is None, "a key closed the booth"
            assert not [m for m in after if m.startswith("STATUS=")], after
        finally:
            booth.terminate()
            booth.wait(timeout=10)
    assert booth.returncode == 0

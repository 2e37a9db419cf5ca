"""What the update tests share: tiny release wheels, a repository served over real HTTP
that an attacker can mutate, an installed booth under a temporary root, and frozen time.

The "booth" in a test release is a console script ``telehealth-kiosk`` that
writes the booth status file (``provisioning.update.booth_status``) and exits;
a release built with ``ready=False`` never reports ready. The restart hook is
``restart_booth.py``, which runs ``current/bin/telehealth-kiosk`` of the root.
The running booth's side of the hold is :class:`FakeBooth`, played whenever the
updater waits (its ``sleep``), or from a thread for an updater in a subprocess.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import json
import os
import shutil
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provisioning.layout import Layout
from provisioning.update.booth_status import BoothStatus, read_status, write_status
from provisioning.update.bundle import install_release, make_bundle
from provisioning.update.publish import Expiry, Repository, keygen
from provisioning.update.updater import Settings, UpdateRun

HERE = Path(__file__).resolve().parent
RESTART_SCRIPT = HERE / "restart_booth.py"
START = datetime(2031, 3, 4, 3, 0, tzinfo=UTC)
"""The frozen "now" of the tests: 03:00 UTC, inside a 02:00-05:00 window."""

BOOTH_MAIN = """\
import json, os, sys
VERSION = {version!r}
READY = {ready!r}

def main():
    path = os.environ["FAKE_BOOTH_STATUS"]
    status = {{"version": VERSION, "activity": "idle", "ready": READY,
              "self_check": "pass" if READY else "pending"}}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(status, f)
    os.replace(tmp, path)
"""


def make_wheel(folder: Path, version: str, *, ready: bool = True) -> Path:
    """A minimal telehealth-kiosk wheel whose booth reports ``version`` (ready or never)."""
    dist = f"telehealth_kiosk-{version}.dist-info"
    files = {
        "fakebooth/__init__.py": BOOTH_MAIN.format(version=version, ready=ready).encode(),
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: telehealth-kiosk\nVersion: {version}\n"
        ).encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": b"[console_scripts]\ntelehealth-kiosk = fakebooth:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"telehealth_kiosk-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2030, 1, 1, 0, 0, 0)), data)
    return path


# ------------------------------------------------------------------ the server

Responder = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: RepoServer

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        self.server.hits.append(path)
        override = self.server.overrides.get(path)
        if callable(override):
            override(self)
            return
        if isinstance(override, bytes):
            data: bytes | None = override
        else:
            file = self.server.directory / path
            data = file.read_bytes() if file.is_file() else None
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class RepoServer(http.server.ThreadingHTTPServer):
    """Serves a repository folder; ``overrides`` replace a path's answer (the attacker)."""

    daemon_threads = True

    def __init__(self, directory: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.directory = directory
        self.overrides: dict[str, bytes | Responder] = {}
        self.hits: list[str] = []
        self.served: dict[str, int] = {}
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


def endless(name: str, server: RepoServer, limit: int = 4_000_000) -> Responder:
    """An answer that never ends (up to ``limit`` bytes, counted in ``server.served``)."""

    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        sent = 0
        try:
            while sent < limit:
                handler.wfile.write(b" " * 16384)
                sent += 16384
                server.served[name] = sent
        except OSError:
            pass

    return respond


def dribble(data: bytes, per_byte_s: float) -> Responder:
    """The right bytes, one at a time, slowly (a slow-retrieval attack)."""

    def respond(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        try:
            for i in range(len(data)):
                handler.wfile.write(data[i : i + 1])
                handler.wfile.flush()
                time.sleep(per_byte_s)
        except OSError:
            pass

    return respond


# ------------------------------------------------------------------ a repository


@dataclass
class Clock:
    """Frozen time that tests move by hand."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Publisher:
    """The maintainer: keys, a repository on disk, served by ``server``."""

    root: Path
    clock: Clock
    fresh: bool = True
    keys: Path = field(init=False)
    repo: Repository = field(init=False)
    server: RepoServer = field(init=False)

    def __post_init__(self) -> None:
        self.keys = self.root / "keys"
        self.repo = Repository(self.root / "repo", self.clock, Expiry())
        if self.fresh:
            keygen(self.keys)
            (self.root / "repo").mkdir(parents=True)
        self.server = RepoServer(self.root / "repo")
        if self.fresh:
            self.repo.init(self.keys, self.server.url)

    def copy(self, root: Path, clock: Clock) -> Publisher:
        """The same keys and repository in another folder, on its own server."""
        shutil.copytree(self.root, root, symlinks=True)
        return Publisher(root, clock, fresh=False)

    def bundle(self, version: str, *, ready: bool = True) -> Path:
        wheel = make_wheel(self.root / f"wheels-{version}", version, ready=ready)
        out = self.root / f"telehealth-kiosk-{version}.tar"
        root = (self.repo.metadata / "root.json").read_bytes()
        make_bundle([wheel], version, out, root, self.repo.source())
        return out

    def publish(self, version: str, *, ready: bool = True, allow_older: bool = False) -> Path:
        bundle = self.root / f"telehealth-kiosk-{version}.tar"
        if not bundle.exists():
            bundle = self.bundle(version, ready=ready)
        self.repo.add(self.keys, bundle, "stable", allow_older=allow_older)
        return bundle


# ------------------------------------------------------------------ a booth


def install_booth(root: Path, bundle: Path) -> Layout:
    """What `kiosk-provision install` leaves: one release, ``current`` pointing at it."""
    layout = Layout(root)
    version = install_release(bundle, layout)
    os.symlink(f"releases/{version}", layout.current)
    layout.runtime.mkdir(parents=True, exist_ok=True)
    set_activity(layout, version, "idle")
    return layout


def set_activity(layout: Layout, version: str, activity: str) -> None:
    write_status(layout.booth_status, BoothStatus(version, activity, True, "pass"))


def settings(publisher: Publisher, **overrides: Any) -> Settings:
    from kiosk.config import MaintenanceWindow

    defaults: dict[str, Any] = {
        "window": MaintenanceWindow(datetime(2000, 1, 1, 2).time(), datetime(2000, 1, 1, 5).time()),
        "time_zone": "UTC",
        "repository": publisher.server.url,
        "health_deadline_s": 5.0,
        "health_poll_s": 0.05,
        "download_deadline_s": 20.0,
        "socket_timeout_s": 5.0,
    }
    defaults.update(overrides)
    return Settings(**defaults)


def restart_command(root: Path) -> tuple[str, ...]:
    return (sys.executable, str(RESTART_SCRIPT), str(root))


class FakeBooth:
    """The running booth's answer to the updater's hold, as kiosk/app.py gives it.

    Between visits it answers a hold file with ``answer`` ("held"; "visit" for
    a resident who opened the door first; None for a booth that never answers)
    and goes back to "idle" once the file is gone. ``holds`` lists the hold
    files it saw. Called as the updater's ``sleep``, it acts whenever the
    updater waits, so the tests stay deterministic.
    """

    def __init__(self, layout: Layout, answer: str | None = "held") -> None:
        self.layout = layout
        self.answer = answer
        self.holds: list[dict[str, Any]] = []

    def react(self) -> None:
        status = read_status(self.layout.booth_status)
        if status is None:
            return
        try:
            hold = json.loads(self.layout.update_hold.read_bytes())
        except FileNotFoundError:
            hold = None
        if hold is not None and status.activity == "idle" and self.answer is not None:
            self.holds.append(hold)
            write_status(
                self.layout.booth_status, dataclasses.replace(status, activity=self.answer)
            )
        elif hold is None and status.activity == "held":
            write_status(self.layout.booth_status, dataclasses.replace(status, activity="idle"))

    def __call__(self, seconds: float) -> None:
        self.react()
        time.sleep(min(seconds, 0.01))


class BoothThread(FakeBooth):
    """The same booth, reacting on its own (for an updater run in a subprocess)."""

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.react()

    def __enter__(self) -> BoothThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def updater(
    layout: Layout,
    publisher: Publisher,
    clock: Clock,
    *,
    booth: FakeBooth | None = None,
    **overrides: Any,
) -> UpdateRun:
    overrides.setdefault("restart_command", restart_command(layout.root))
    overrides.setdefault("hold_timeout_s", 2.0)
    return UpdateRun(
        layout, settings(publisher, **overrides), clock=clock, sleep=booth or FakeBooth(layout)
    )


def tree_bytes(folder: Path) -> dict[str, bytes | str]:
    """Every file under ``folder`` (symlinks as their target): the trusted state, to compare."""
    out: dict[str, bytes | str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out


def release_view(layout: Layout) -> tuple[str, list[str]]:
    """The running release and the release folders: what no attack may change."""
    return os.readlink(layout.current), sorted(p.name for p in layout.releases.iterdir())


def copy_booth(template: Path, root: Path) -> Layout:
    shutil.copytree(template, root, symlinks=True)
    return Layout(root)


def frozen_tuf_time(monkeypatch: Any, clock: Clock) -> None:
    """python-tuf takes its reference time from datetime.now; give it the test's clock."""
    import datetime as real

    from tuf.ngclient._internal import trusted_metadata_set

    class _Frozen(real.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return clock.now.astimezone(tz) if tz is not None else clock.now

    class _Module:
        datetime = _Frozen
        timezone = real.timezone

    monkeypatch.setattr(trusted_metadata_set, "datetime", _Module)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def iter_empty_files(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size == 0:
                yield path

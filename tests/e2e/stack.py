"""The whole system for call tests: a real hub, a real booth process, a real console in Chromium.

Nothing here is a stand-in. :class:`HubProcess` is ``clinic-hub serve --dev``
on a database made by :func:`prepare_hub` (a clinician, a booth and its
credential, the way ``scripts/demo_setup.py`` makes them). :class:`BoothProcess`
is ``telehealth-kiosk --simulate --headless`` with a configuration from
:func:`booth_config`, driven through its stdin commands and read through its
stdout JSON lines (``docs/simulator.md``). :class:`Console` is the hub's own
console page in Debian's Chromium (``tests/browser.py``), signed in through
the form.

Each runs inside a namespace of the test's :class:`~tests.netlab.NetLab`:
the hub and the clinician's browser on the clinic side, the booth on its own,
so that the booth's link can be cut, thinned and made lossy without touching
anything else. No ICE server exists but the ones a test starts
(:func:`run_coturn`): the booth's configuration lists none, the console uses
exactly what the hub gives it.

The stack lives for a whole test module (:class:`Stack`); every test walks a
visit from the attract screen and leaves the booth there again.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page, Playwright

from clinic.server import dev_certificate
from clinic.store import Store
from tests.browser import sync_chromium_context
from tests.netlab import NetLab, Netns, Veth, call_in

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_CONFIG = ROOT / "examples" / "demo-booth.toml"

CLINICIAN = "e2e.clinician"
PASSWORD = "e2e clinician passphrase 1"
BOOTH_ID = "e2e-booth-1"
BOOTH_NAME = "E2E Booth"
SITE = "Lakeside Community Center"
ADDRESS = "42 Harbor Road, Lakeside, MN 55001"
ROOM = "Room 7B"
HUB_PORT = 8443

START_TIMEOUT_S = 30.0
"""Seconds a process has to come up (Python imports aiortc, av, numpy: slow on 2 busy cores)."""
UI_TIMEOUT_MS = 10_000


# ---------------------------------------------------------------- namespaces


def no_ipv6(*namespaces: Netns) -> None:
    """IPv6 off in these namespaces; call before their veths are made.

    A new veth's IPv6 link-local address finishes duplicate address detection
    a second or two after the link comes up. Chromium takes that for a network
    change: it aborts navigations (``ERR_NETWORK_CHANGED``) and may drop
    connections. The lab's links are IPv4 only anyway.
    """
    for ns in namespaces:
        for scope in ("all", "default"):
            ns.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{scope}.disable_ipv6=1"])


# ---------------------------------------------------------------- the hub


@dataclass(frozen=True)
class HubFiles:
    """A hub's database and certificate, and the booth credential it issued."""

    db: Path
    fingerprint: str
    credential: Path
    tokens: dict[str, str]


def prepare_hub(directory: Path, booths: Sequence[str] = (BOOTH_ID,)) -> HubFiles:
    """A hub database with one clinician and ``booths``; the first booth's credential file."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "hub.sqlite3"
    # Where `clinic-hub serve --dev` looks for (and reuses) its certificate.
    _, _, fingerprint = dev_certificate(db.parent / "dev-tls")
    tokens: dict[str, str] = {}
    with Store(db) as store:
        store.add_clinician(CLINICIAN, PASSWORD, "Dr. E2E Tester")
        for booth_id in booths:
            tokens[booth_id] = store.add_booth(
                booth_id, name=BOOTH_NAME, site=SITE, address=ADDRESS, room=ROOM
            )
    credential = directory / "hub-credential"
    write_private(credential, tokens[booths[0]] + "\n")
    return HubFiles(db, fingerprint, credential, tokens)


def write_private(path: Path, text: str) -> None:
    """A file only its owner may read (the booth refuses a credential others can read)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_listening(ns: Netns, host: str, port: int, process: subprocess.Popen[Any]) -> None:
    """Until something accepts TCP on ``host:port`` inside ``ns`` (or the process died)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        if call_in(ns, _connects, host, port):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} in {ns.name}")


class HubProcess:
    """``clinic-hub serve --dev`` inside ``ns``, listening on every address there."""

    def __init__(
        self,
        ns: Netns,
        files: HubFiles,
        log: Path,
        *,
        port: int = HUB_PORT,
        turn_urls: Sequence[str] = (),
        turn_secret_file: Path | None = None,
        call_grace: float | None = None,
    ) -> None:
        self.ns = ns
        self.port = port
        self.log = log
        argv = [
            str(BIN / "clinic-hub"),
            "serve",
            "--dev",
            "--db",
            str(files.db),
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ]
        for url in turn_urls:
            argv += ["--turn-url", url]
        if turn_secret_file is not None:
            argv += ["--turn-secret-file", str(turn_secret_file)]
        if call_grace is not None:
            argv += ["--call-grace", str(call_grace)]
        with log.open("ab") as out:
            self.process = ns.popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_listening(ns, "127.0.0.1", port, self.process)

    @property
    def base(self) -> str:
        """The console's address for a browser in the hub's own namespace."""
        return f"https://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------- the booth


def booth_config(
    path: Path,
    *,
    hub_url: str,
    fingerprint: str,
    credential: Path | None,
    booth_id: str = BOOTH_ID,
    network_grace_seconds: float = 10,
    wrap_up_seconds: float = 3,
) -> Path:
    """``examples/demo-booth.toml`` pointed at a test hub, with short timeouts."""
    text = DEMO_CONFIG.read_text(encoding="utf-8")

    def sub(pattern: str, replacement: str) -> None:
        nonlocal text
        text, n = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert n == 1, f"{pattern!r} is not in {DEMO_CONFIG}"

    sub(r'^id = ".*"$', f'id = "{booth_id}"')
    sub(r'^name = "Demo Booth"$', f'name = "{BOOTH_NAME}"')
    sub(r'^url = ".*"$', f'url = "{hub_url}"')
    hub = f'certificate_sha256 = "{fingerprint}"'
    if credential is not None:
        hub += f'\ncredential_file = "{credential}"'
    sub(r'^certificate_sha256 = ".*"$', hub)
    sub(r"^network_grace_seconds = .*$", f"network_grace_seconds = {network_grace_seconds}")
    sub(r"^wrap_up_seconds = .*$", f"wrap_up_seconds = {wrap_up_seconds}")
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Line:
    """One JSON line from the booth, and when the test read it (``time.monotonic``)."""

    at: float
    data: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


class BoothProcess:
    """``telehealth-kiosk --simulate --headless`` inside ``ns``: commands in, JSON lines out."""

    def __init__(self, ns: Netns, config: Path, log: Path) -> None:
        self.ns = ns
        self.log = log
        self.lines: list[Line] = []
        self._changed = threading.Condition()
        argv = [
            str(BIN / "telehealth-kiosk"),
            "--simulate",
            "--headless",
            "--config",
            str(config),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as err:
            self.process: subprocess.Popen[str] = ns.popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                bufsize=1,
                env=env,
                cwd=ROOT,
            )
        self._reader = threading.Thread(target=self._read, name="booth-stdout", daemon=True)
        self._reader.start()
        self.wait_for(lambda m: m["type"] == "ready", timeout=START_TIMEOUT_S)

    def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        for raw in stdout:
            try:
                data = json.loads(raw)
            except ValueError:
                data = {"type": "unparsed", "text": raw}
            with self._changed:
                self.lines.append(Line(time.monotonic(), data))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    # -------------------------------------------------------------- commands

    def send(self, *commands: str) -> int:
        """Send command lines; returns the index the booth's answers will start at."""
        with self._changed:
            mark = len(self.lines)
        stdin = self.process.stdin
        assert stdin is not None
        for command in commands:
            stdin.write(command + "\n")
        stdin.flush()
        return mark

    def mark(self) -> int:
        with self._changed:
            return len(self.lines)

    def wait_for(
        self,
        check: Callable[[Line], bool],
        *,
        since: int = 0,
        timeout: float = 10.0,
        what: str = "",
    ) -> Line:
        """The first line from index ``since`` on for which ``check`` holds (waits for it)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            index = since
            while True:
                while index < len(self.lines):
                    line = self.lines[index]
                    index += 1
                    if check(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and index >= len(self.lines)):
                    tail = [line.data for line in self.lines[-15:]]
                    raise AssertionError(
                        f"booth: no {what or 'such line'} within {timeout} s "
                        f"(exit code {self.process.poll()}); last lines: {tail}"
                    )
                self._changed.wait(min(left, 0.2))

    def wait_state(self, state: str, *, since: int = 0, timeout: float = 10.0) -> Line:
        return self.wait_for(
            lambda m: m["type"] == "state" and m["state"] == state,
            since=since,
            timeout=timeout,
            what=f"state {state}",
        )

    def wait_effect(self, effect: str, *, since: int = 0, timeout: float = 10.0) -> Line:
        return self.wait_for(
            lambda m: m["type"] == "effect" and m["effect"] == effect,
            since=since,
            timeout=timeout,
            what=f"effect {effect}",
        )

    def _ask(self, command: str, kind: str) -> dict[str, Any]:
        mark = self.send(command)
        return self.wait_for(lambda m: m["type"] in (kind, "error"), since=mark, what=kind).data

    def status(self) -> dict[str, Any]:
        """The ``status`` line (``state`` command)."""
        return self._ask("state", "status")

    def call(self) -> dict[str, Any]:
        """The ``call`` line (``call`` command): the call engine's view."""
        line = self._ask("call", "call")
        assert line["type"] == "call", line
        return line

    def until_call(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 15.0, what: str = ""
    ) -> dict[str, Any]:
        """Ask ``call`` until ``check`` holds for its answer."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.call()
            if check(line):
                return line
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"booth call: no {what or 'such status'} in {timeout} s: {line}"
                )
            time.sleep(0.25)

    def states(self, since: int = 0) -> list[str]:
        with self._changed:
            return [m["state"] for m in self.lines[since:] if m["type"] == "state"]

    def effects(self, since: int = 0) -> list[str]:
        with self._changed:
            return [m["effect"] for m in self.lines[since:] if m["type"] == "effect"]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    # -------------------------------------------------------------- a visit

    def walk_to_waiting(self) -> int:
        """Attract to waiting, as a resident would; returns the mark before the first touch."""
        status = self.status()
        assert status["state"] == "attract", (status, self.tail())
        mark = self.send("touch start", "touch accept", "touch walk_in", "touch devices_ok")
        self.wait_effect("join_queue", since=mark)
        states = self.states(mark)
        assert states == ["notice", "check_in", "device_check", "waiting"], (states, self.tail())
        return mark

    def tail(self, n: int = 25) -> list[dict[str, Any]]:
        """The last ``n`` lines, for an assertion message."""
        with self._changed:
            return [line.data for line in self.lines[-n:]]

    def stop(self) -> int | None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self.send("quit")
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        return self.process.returncode


# ---------------------------------------------------------------- the console

BRIGHTNESS = """() => {
  const video = document.querySelector('[data-testid="remote-video"]');
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement("canvas");
  canvas.width = 64;
  canvas.height = 48;
  const g = canvas.getContext("2d");
  g.drawImage(video, 0, 0, canvas.width, canvas.height);
  const d = g.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += (d[i] + d[i + 1] + d[i + 2]) / 3;
  return sum / (d.length / 4);
}"""
"""Mean brightness (0-255) of the picture the console shows of the booth, or null."""

SELECTED_PAIR = """async () => {
  const pc = window.consoleTest.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let pair = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      pair = report.get(s.selectedCandidatePairId);
    }
  });
  if (!pair) report.forEach((s) => {
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s;
  });
  if (!pair) return null;
  const local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
  return {
    local: local.candidateType, remote: remote.candidateType,
    localAddress: local.address, remoteAddress: remote.address,
    relayProtocol: local.relayProtocol || null, bytesReceived: pair.bytesReceived,
  };
}"""
"""The candidate pair Chromium's console uses now: types and addresses of both ends."""

AUDIO_LEVEL = """async () => {
  const pc = window.consoleTest.pc;
  if (!pc) return null;
  let level = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio" && s.audioLevel !== undefined) {
      level = Math.max(level || 0, s.audioLevel);
    }
  });
  return level;
}"""
"""The loudness (0-1) of the booth's audio as the console plays it now, or null."""


class Console:
    """The console page in Chromium, signed in through the form, with waits on ``consoleTest``."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def sign_in(self, username: str = CLINICIAN, password: str = PASSWORD) -> None:
        self.page.goto(f"{self.base}/")
        assert self.page.url == f"{self.base}/login", self.page.url  # sent to sign in first
        self.page.fill('[data-testid="login-username"]', username)
        self.page.fill('[data-testid="login-password"]', password)
        self.page.click('[data-testid="login-submit"]')
        self.page.wait_for_url(f"{self.base}/", timeout=UI_TIMEOUT_MS)
        self.until("t.state === 'lobby'")

    def until(self, expression: str, timeout: float = 10.0, poll_ms: int = 50) -> Any:
        """Wait until ``expression`` (``t`` is ``window.consoleTest``) is truthy; return it."""
        handle = self.page.wait_for_function(
            f"() => {{ const t = window.consoleTest; return t && ({expression}); }}",
            timeout=timeout * 1000,
            polling=poll_ms,
        )
        return handle.json_value()

    def value(self, expression: str) -> Any:
        return self.page.evaluate(
            f"() => {{ const t = window.consoleTest; return ({expression}); }}"
        )

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.page.evaluate("() => window.consoleTest.stats()")
        return stats

    def until_stats(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = 15.0, what: str = ""
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if check(stats):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"console: no {what or 'such media'} in {timeout} s: {stats}")
            time.sleep(0.2)

    def brightness(self) -> float | None:
        value: float | None = self.page.evaluate(BRIGHTNESS)
        return value

    def audio_level(self) -> float | None:
        value: float | None = self.page.evaluate(AUDIO_LEVEL)
        return value

    def selected_pair(self) -> dict[str, Any] | None:
        pair: dict[str, Any] | None = self.page.evaluate(SELECTED_PAIR)
        return pair

    def testid(self, name: str) -> Any:
        return self.page.locator(f'[data-testid="{name}"]')

    def booth_row_state(self, booth_id: str = BOOTH_ID) -> str | None:
        """The booth list's ``data-state`` for a booth (``offline`` when it is not online)."""
        state: str | None = self.page.evaluate(
            """(id) => {
              const row = document.querySelector(
                `[data-testid="booth-row"][data-booth-id="${id}"]`);
              return row ? row.dataset.state : null;
            }""",
            booth_id,
        )
        return state

    def answer(self, booth_id: str = BOOTH_ID) -> dict[str, Any]:
        """Click Answer on the booth's queue row; the call as the page has it."""
        row = self.page.locator(f'[data-testid="queue-row"][data-booth-id="{booth_id}"]')
        row.wait_for(timeout=UI_TIMEOUT_MS)
        row.locator('[data-testid="answer"]').click()
        call: dict[str, Any] = self.until("t.state === 'in_call' && t.call")
        return call


# ---------------------------------------------------------------- a hub link that resets

RESET_TABLE = "e2ereset"


@contextlib.contextmanager
def hub_link_reset(ns: Netns, port: int = HUB_PORT) -> Iterator[None]:
    """While inside: every TCP segment ``ns`` sends to ``port`` is refused with a reset.

    The booth's own kernel answers its hub connection with a TCP reset, so the
    booth loses the hub at its next send and cannot reconnect, while the hub,
    which hears nothing, keeps its end of the connection (and the call) open.
    A table of its own, beside :class:`~tests.netlab.Netns`'s, gone with the namespace.
    """
    chain = "{ type filter hook output priority 0 ; policy accept ; }"
    ns.run(["nft", "add", "table", "inet", RESET_TABLE])
    ns.run(["nft", "add", "chain", "inet", RESET_TABLE, "out", chain])
    rule = ["tcp", "dport", str(port), "reject", "with", "tcp", "reset"]
    ns.run(["nft", "add", "rule", "inet", RESET_TABLE, "out", *rule])
    try:
        yield
    finally:
        ns.run(["nft", "delete", "table", "inet", RESET_TABLE], check=False)


# ---------------------------------------------------------------- coturn


@dataclass(frozen=True)
class Coturn:
    url: str
    secret_file: Path
    process: subprocess.Popen[bytes]


def _stun_answers(host: str, port: int) -> bool:
    transaction = os.urandom(12)
    request = (1).to_bytes(2, "big") + bytes(2) + (0x2112A442).to_bytes(4, "big") + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(request, (host, port))
            reply = sock.recv(2048)
        except OSError:
            return False
    return reply[:2] == (0x0101).to_bytes(2, "big") and reply[8:20] == transaction


@contextlib.contextmanager
def run_coturn(ns: Netns, ip: str, workdir: Path, port: int = 3478) -> Iterator[Coturn]:
    """Debian's coturn inside ``ns``, listening and relaying on ``ip`` only, REST-API secret.

    Peers may be relayed to ``ip`` alone: both parties of a call get relay
    candidates there, so a call through it is relay to relay, and coturn can
    be used to reach nothing else.
    """
    secret = secrets.token_hex(24)
    secret_file = workdir / "turn-secret"
    write_private(secret_file, secret + "\n")
    argv = [
        "turnserver",
        "-n",
        f"--listening-ip={ip}",
        f"--relay-ip={ip}",
        f"--listening-port={port}",
        "--use-auth-secret",
        f"--static-auth-secret={secret}",
        "--realm=booth.test",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--no-multicast-peers",
        "--log-file=stdout",
        "--simple-log",
        "--verbose",  # sessions, allocations and permissions in its log, for the tests
        "--min-port=40000",
        "--max-port=40100",
        "--denied-peer-ip=0.0.0.0-255.255.255.255",
        f"--allowed-peer-ip={ip}",
        f"--userdb={workdir / 'turndb'}",
        f"--pidfile={workdir / 'turnserver.pid'}",
    ]
    with (workdir / "turnserver.log").open("wb") as log:
        process = ns.popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not call_in(ns, _stun_answers, ip, port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "coturn did not start:\n" + (workdir / "turnserver.log").read_text()
                )
            time.sleep(0.1)
        yield Coturn(f"turn:{ip}:{port}?transport=udp", secret_file, process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# ---------------------------------------------------------------- a whole stack


@dataclass
class Stack:
    """A hub and a console on the clinic side, a booth on its own side of ``link``."""

    lab: NetLab
    link: Veth
    hub: HubProcess
    booth: BoothProcess
    console: Console
    files: HubFiles
    workdir: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def booth_ns(self) -> Netns:
        return self.link.a.ns

    @property
    def clinic_ns(self) -> Netns:
        return self.link.b.ns

    def booth_online(self, timeout: float = 15.0) -> None:
        """Until the console lists the booth online and idle (its hub link is up)."""
        self.console.until(
            f"t.snapshot.booths.some((b) => b.booth_id === '{BOOTH_ID}' && b.online "
            "&& b.state === 'idle')",
            timeout=timeout,
        )

    def start_call(self) -> tuple[int, str]:
        """Walk the booth to the queue and answer it on the console; (mark, call_id)."""
        self.booth_online()
        mark = self.booth.walk_to_waiting()
        self.console.until(f"t.snapshot.queue.some((q) => q.booth_id === '{BOOTH_ID}')", timeout=10)
        call = self.console.answer()
        self.booth.wait_state("in_call", since=mark)
        self.booth.wait_effect("accept_call", since=mark)
        return mark, str(call["call_id"])

    def media_both_ways(self, timeout: float = 20.0) -> tuple[dict[str, Any], dict[str, Any]]:
        """Until the console decodes the booth's video and the booth the clinician's."""
        stats = self.console.until_stats(
            lambda s: s["framesDecoded"] > 0 and s["audioBytesReceived"] > 0,
            timeout,
            "video frames and audio from the booth",
        )
        call = self.booth.until_call(
            lambda c: (
                c["status"] == "connected"
                and c["video_frames"] > 0
                and c["audio_frames"] > 0
                and c["remote_video"]
            ),
            timeout,
            "clinician's media",
        )
        return stats, call

    def tidy(self) -> None:
        """Back to a quiet booth at attract and a console in the lobby, whatever a test left.

        Run after every test, so that one failure does not fail the tests after it.
        """
        if self.booth.process.poll() is not None:
            return
        console = self.console
        with contextlib.suppress(Exception):
            if console.value("t.call !== null"):
                console.testid("end-call").click()
            for button in console.page.locator('[data-testid="ack"]').all():
                button.click()
        status = self.booth.status()
        if status["state"] == "attract" and not status["emergency"] and not status["door_open"]:
            return
        mark = self.booth.send(
            "emergency release", "door close", "staff clear", "touch end_call", "touch cancel"
        )
        with contextlib.suppress(AssertionError):
            self.booth.wait_for(
                lambda m: m["type"] == "state" and m["state"] in ("wrap_up", "attract"),
                since=mark,
                timeout=5,
            )
        self.booth.send("touch done")
        self.booth.wait_for(
            lambda m: m["type"] == "state" and m["state"] == "attract", since=mark, timeout=15
        )

    def end_from_booth(self, mark: int) -> None:
        """The resident ends the call; the console goes back to the lobby, the booth to attract."""
        end = self.booth.send("touch end_call")
        self.booth.wait_state("wrap_up", since=end)
        assert self.console.until("t.state === 'lobby' && t.lastEnded") == "resident_ended"
        self.booth.wait_effect("wipe", since=end, timeout=10)
        self.booth.wait_state("attract", since=end, timeout=10)


@contextlib.contextmanager
def clinic_stack(
    workdir: Path,
    playwright: Playwright,
    *,
    booth_options: dict[str, Any] | None = None,
    hub_options: dict[str, Any] | None = None,
    booths: Sequence[str] = (BOOTH_ID,),
) -> Iterator[Stack]:
    """Booth and clinic namespaces on a veth; the hub, the booth and a signed-in console.

    ``booths`` are registered at the hub; the first one runs (the others are for a
    test to start itself).
    """
    with NetLab() as lab:
        booth_ns, clinic_ns = lab.namespace("booth"), lab.namespace("clinic")
        no_ipv6(booth_ns, clinic_ns)
        link = lab.veth(booth_ns, clinic_ns)
        files = prepare_hub(workdir / "hub", booths)
        hub = HubProcess(link.b.ns, files, workdir / "hub.log", **(hub_options or {}))
        try:
            config = booth_config(
                workdir / "booth.toml",
                hub_url=f"wss://{link.b.ip}:{hub.port}/booth",
                fingerprint=files.fingerprint,
                credential=files.credential,
                **(booth_options or {}),
            )
            booth = BoothProcess(link.a.ns, config, workdir / "booth.log")
            try:
                with sync_chromium_context(playwright, link.b.ns) as context:
                    console = Console(_page(context), hub.base)
                    console.sign_in()
                    stack = Stack(lab, link, hub, booth, console, files, workdir)
                    stack.booth_online()
                    yield stack
            finally:
                booth.stop()
        finally:
            hub.stop()


def _page(context: BrowserContext) -> Page:
    return context.pages[0] if context.pages else context.new_page()


def dump_on_failure(stack: Stack) -> str:
    """The tails of the processes' logs, for an assertion message."""
    parts = []
    for name, path in (("hub", stack.hub.log), ("booth", stack.booth.log)):
        with contextlib.suppress(OSError):
            parts.append(f"--- {name} ---\n" + "\n".join(path.read_text().splitlines()[-40:]))
    return "\n".join(parts)

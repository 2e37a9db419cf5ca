"""A real coturn on 127.0.0.1 for call tests (test support, not product).

Credentials only prove something against the server that checks them, so the
TURN tests start Debian's ``turnserver`` with the REST-API shared secret the
hub uses in production. Everything stays on loopback: coturn listens on and
relays from 127.0.0.1 only, and may relay only to 127.0.0.1 peers.

Readiness is a STUN Binding answered on the listening port, not a sleep.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

HOST = "127.0.0.1"
REALM = "booth.test"
RELAY_PORTS = 32
START_TIMEOUT_S = 10.0
STUN_MAGIC = 0x2112A442


class TurnServer(NamedTuple):
    """What a test needs: the ``turn:`` URL and the shared secret."""

    url: str
    secret: bytes

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) for aioice, which takes an address rather than a URL."""
        port = self.url.split(":")[2].partition("?")[0]
        return HOST, int(port)


def turnserver_command(
    port: int, relay_ports: tuple[int, int], secret: bytes, workdir: Path
) -> list[str]:
    """The full coturn command line: no config file, loopback only, REST-API auth."""
    return [
        "turnserver",
        "-n",  # no config file: only these options apply
        f"--listening-ip={HOST}",
        f"--relay-ip={HOST}",
        f"--listening-port={port}",
        "--use-auth-secret",
        f"--static-auth-secret={secret.decode()}",
        f"--realm={REALM}",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--log-file=stdout",
        "--simple-log",
        f"--min-port={relay_ports[0]}",
        f"--max-port={relay_ports[1]}",
        # Both peers of a test call are on 127.0.0.1, which coturn refuses by default.
        "--allow-loopback-peers",
        "--no-multicast-peers",
        # Relay to nothing but loopback, whatever a client asks for.
        "--denied-peer-ip=0.0.0.0-255.255.255.255",
        "--denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        f"--allowed-peer-ip={HOST}",
        f"--userdb={workdir / 'turndb'}",
        f"--pidfile={workdir / 'turnserver.pid'}",
    ]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _listening_port() -> int:
    """A port free for both UDP and TCP (coturn listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if _bindable(port, socket.SOCK_STREAM):
            return port


def _relay_range() -> tuple[int, int]:
    """Free UDP ports below the ephemeral range, so clients' own sockets never take them."""
    high = _ephemeral_low() - RELAY_PORTS
    for _ in range(100):
        low = random.randrange(10_000, high)
        if all(_bindable(p, socket.SOCK_DGRAM) for p in range(low, low + RELAY_PORTS)):
            return low, low + RELAY_PORTS - 1
    raise RuntimeError("no free block of UDP ports for coturn's relays")


def _answers_stun(port: int) -> bool:
    """True once coturn answers a STUN Binding request on its UDP port."""
    transaction = os.urandom(12)
    request = (0x0001).to_bytes(2) + (0).to_bytes(2) + STUN_MAGIC.to_bytes(4) + transaction
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        sock.sendto(request, (HOST, port))
        try:
            reply = sock.recv(2048)
        except OSError:  # timeout, or ICMP port unreachable while still starting
            return False
    return reply[:2] == (0x0101).to_bytes(2) and reply[8:20] == transaction


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def run_turn_server(workdir: Path, secret: bytes | None = None) -> Iterator[TurnServer]:
    """Start coturn, wait until it answers STUN, yield it, and stop it."""
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed: `make apt` installs it (apt package coturn)")
    secret = secret if secret is not None else secrets.token_hex(16).encode()
    log_path = workdir / "turnserver.log"
    for _attempt in range(3):  # a port picked as free can be taken before coturn binds it
        port = _listening_port()
        command = turnserver_command(port, _relay_range(), secret, workdir)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while process.poll() is None and time.monotonic() < deadline:
                if _answers_stun(port):
                    yield TurnServer(f"turn:{HOST}:{port}?transport=udp", secret)
                    return
            if process.poll() is None:
                raise RuntimeError(
                    f"coturn did not answer STUN within {START_TIMEOUT_S} s:\n"
                    + log_path.read_text(errors="replace")
                )
        finally:
            _stop(process)
    raise RuntimeError(
        "coturn exited at start three times:\n" + log_path.read_text(errors="replace")
    )


@pytest.fixture
def turn_server(tmp_path: Path) -> Iterator[TurnServer]:
    """A running coturn on 127.0.0.1 with a fresh shared secret: (url, secret)."""
    with run_turn_server(tmp_path) as server:
        yield server

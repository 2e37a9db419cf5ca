"""WebRTC on loopback for the call tests, and a network that can be cut.

aioice never offers 127.0.0.1 as a host candidate, so without the patch two
peers in one process on a machine with no other interface find no path (and
on a machine with one, they would use it). Every test here gets loopback.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import pytest

from tests.kiosk.call.hubfixtures import db, tls  # noqa: F401  (shared by the hub-link tests)


@pytest.fixture(autouse=True)
def loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """ICE host candidates on 127.0.0.1 only."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@dataclass
class Network:
    """What happens to the UDP datagrams aioice receives (both peers, every call).

    ``cut``: all are dropped. ``loss``: that fraction of those sent from the
    ports in ``lossy_from`` is dropped (a poor link in one direction).
    """

    cut: bool = False
    loss: float = 0.0
    lossy_from: set[int] = field(default_factory=set)
    dropped: int = 0
    _random: random.Random = field(default_factory=lambda: random.Random(7))

    def drops(self, addr: Any) -> bool:
        if self.cut:
            return True
        lossy = isinstance(addr, tuple) and len(addr) >= 2 and addr[1] in self.lossy_from
        return lossy and self._random.random() < self.loss


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> Iterator[Network]:
    net = Network()
    original = aioice.ice.StunProtocol.datagram_received

    def datagram_received(self: aioice.ice.StunProtocol, data: bytes, addr: Any) -> None:
        if net.drops(addr):
            net.dropped += 1
            return
        original(self, data, addr)

    monkeypatch.setattr(aioice.ice.StunProtocol, "datagram_received", datagram_received)
    yield net

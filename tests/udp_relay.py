"""A userspace UDP relay with delay, jitter and loss (test support, not product).

This kernel has no ``netem``, so the lab cannot delay packets with ``tc``. Put
this relay where a peer expects its far end instead: in front of coturn (peers
use ``turn:<relay address>``), or between a client and any UDP server. Each
client address gets its own upstream socket, as a NAT would give it, so the
server still sees one 5-tuple per client and answers reach the right client.

Impairments are one-way and per direction (:attr:`UdpRelay.to_target`,
:attr:`UdpRelay.to_client`), and can be changed while packets flow. Jitter is
uniform in ``[delay - jitter, delay + jitter]``; packets keep their order unless
``reorder=True`` (then a late draw may overtake). Loss ``1.0`` makes a
direction go silent. Run the relay on a :class:`tests.netlab.NetnsLoop` to put
it inside a namespace.

Usage::

    async with UdpRelay(target=("127.0.0.1", turn_port), delay=0.05, jitter=0.01) as relay:
        host, port = relay.address          # tell the peers this instead
        relay.to_client.loss = 0.2          # later: lose 20 % of the replies
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass
from typing import cast

Address = tuple[str, int]


@dataclass
class Impairment:
    """What one direction suffers: seconds of delay, +/- seconds of jitter, loss 0..1."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0


@dataclass
class Counters:
    """Datagrams seen per direction: forwarded, or dropped by the loss draw."""

    forwarded: int = 0
    dropped: int = 0


class _Direction:
    """Schedules sends for one direction of one client.

    In order-keeping mode the datagrams wait in one FIFO drained by one timer:
    separate timers due at the same instant may fire in any order.
    """

    def __init__(self, relay: UdpRelay, impairment: Impairment, counters: Counters) -> None:
        self._relay = relay
        self._impairment = impairment
        self._counters = counters
        self._queue: deque[tuple[float, asyncio.DatagramTransport, bytes, Address | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def push(self, transport: asyncio.DatagramTransport, data: bytes, to: Address | None) -> None:
        relay = self._relay
        spec = self._impairment
        if spec.loss > 0.0 and relay.random.random() < spec.loss:
            self._counters.dropped += 1
            return
        self._counters.forwarded += 1
        delay = spec.delay
        if spec.jitter > 0.0:
            delay += relay.random.uniform(-spec.jitter, spec.jitter)
        loop = relay.loop
        due = loop.time() + max(delay, 0.0)
        if relay.reorder:
            loop.call_at(due, _send, transport, data, to)
            return
        if not self._queue and due <= loop.time():
            _send(transport, data, to)
            return
        if self._queue:
            due = max(due, self._queue[-1][0])
        self._queue.append((due, transport, data, to))
        if self._timer is None:
            self._timer = loop.call_at(due, self._drain)

    def _drain(self) -> None:
        self._timer = None
        loop = self._relay.loop
        while self._queue and self._queue[0][0] <= loop.time():
            _, transport, data, to = self._queue.popleft()
            _send(transport, data, to)
        if self._queue:
            self._timer = loop.call_at(self._queue[0][0], self._drain)

    def cancel(self) -> None:
        """Forget what is still waiting (the relay is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queue.clear()


def _send(transport: asyncio.DatagramTransport, data: bytes, to: Address | None) -> None:
    if not transport.is_closing():
        transport.sendto(data, to)


class _Downstream(asyncio.DatagramProtocol):
    """The listening socket: datagrams from clients."""

    def __init__(self, relay: UdpRelay) -> None:
        self._relay = relay

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for one client must not stop the relay


class _Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the target: datagrams back from it."""

    def __init__(self, relay: UdpRelay, client: Address) -> None:
        self._relay = relay
        self._client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.backlog: list[bytes] = []
        self.to_target: _Direction | None = None
        self.to_client: _Direction | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._relay._from_target(self, data, self._client)

    def error_received(self, exc: Exception) -> None:
        pass  # target not listening (yet): the datagram is lost, as on a network


class UdpRelay:
    """Forward UDP between clients and one target, impairing each direction."""

    def __init__(
        self,
        target: Address,
        *,
        listen: Address = ("127.0.0.1", 0),
        delay: float = 0.0,
        jitter: float = 0.0,
        loss: float = 0.0,
        reorder: bool = False,
        seed: int | None = None,
    ) -> None:
        self.target = target
        self.listen = listen
        self.to_target = Impairment(delay, jitter, loss)
        self.to_client = Impairment(delay, jitter, loss)
        self.reorder = reorder
        self.random = random.Random(seed)
        self.sent = Counters()  # client -> target
        self.returned = Counters()  # target -> client
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[Address, _Upstream] = {}
        self._opening: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "relay not started"
        return self._loop

    @property
    def address(self) -> Address:
        """Where clients send: the listening (host, port)."""
        assert self._transport is not None, "relay not started"
        host, port = self._transport.get_extra_info("sockname")[:2]
        return host, port

    async def start(self) -> None:
        """Bind the listening socket."""
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Downstream(self), local_addr=self.listen
        )
        self._transport = transport

    async def close(self) -> None:
        """Close every socket; scheduled datagrams are dropped."""
        self._closed = True  # first: no new sessions while we wait below
        if self._transport is not None:
            self._transport.close()
        for task in self._opening:
            task.cancel()
        await asyncio.gather(*self._opening, return_exceptions=True)
        for session in self._sessions.values():
            for direction in (session.to_target, session.to_client):
                if direction is not None:
                    direction.cancel()
            if session.transport is not None:
                session.transport.close()
        self._sessions.clear()
        await asyncio.sleep(0)  # let the transports finish closing

    async def __aenter__(self) -> UdpRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _from_client(self, data: bytes, client: Address) -> None:
        if self._closed:
            return
        session = self._sessions.get(client)
        if session is None:
            session = _Upstream(self, client)
            session.to_target = _Direction(self, self.to_target, self.sent)
            session.to_client = _Direction(self, self.to_client, self.returned)
            self._sessions[client] = session
            task = self.loop.create_task(self._open(session))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)
        if session.transport is None:
            session.backlog.append(data)
            return
        assert session.to_target is not None
        session.to_target.push(session.transport, data, None)

    async def _open(self, session: _Upstream) -> None:
        await self.loop.create_datagram_endpoint(lambda: session, remote_addr=self.target)
        assert session.transport is not None and session.to_target is not None
        if self._closed:
            session.transport.close()
            return
        backlog, session.backlog = session.backlog, []
        for data in backlog:
            session.to_target.push(session.transport, data, None)

    def _from_target(self, session: _Upstream, data: bytes, client: Address) -> None:
        if self._closed or self._transport is None or session.to_client is None:
            return
        session.to_client.push(self._transport, data, client)

"""The network lab works: namespaces come and go, and each impairment does what it says.

Counts, not timings, wherever possible; where time is the point (tbf, relay
delay) the bounds are wide enough for a busy two-core CI machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import cast

import pytest

from tests.netlab import (
    NetLab,
    Netns,
    NetnsLoop,
    Side,
    Veth,
    call_in,
    namespace_names,
    require_root,
    socket_in,
    sweep_stale,
)
from tests.udp_relay import UdpRelay

ECHO_TIMEOUT_S = 0.3
SO_RCVBUFFORCE = 33  # Linux; root may exceed rmem_max (not in the socket module)

# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def udp_echo(side: Side) -> Iterator[tuple[str, int]]:
    """A UDP echo server inside ``side``'s namespace, on its address."""
    sock = socket_in(side.ns)
    sock.bind((side.ip, 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            with contextlib.suppress(OSError):
                sock.sendto(data, peer)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield sock.getsockname()
    finally:
        stop.set()
        thread.join()
        sock.close()


def echoes(client: socket.socket, server: tuple[str, int], tries: int = 3) -> bool:
    """True when one of ``tries`` datagrams comes back."""
    for n in range(tries):
        payload = f"ping {n} {time.monotonic()}".encode()
        try:
            client.sendto(payload, server)
            while True:
                data, _ = client.recvfrom(2048)
                if data == payload:
                    return True
        except OSError:  # timeout, or ENETUNREACH while the link is down
            continue
    return False


def eventually_echoes(client: socket.socket, server: tuple[str, int], within: float = 5.0) -> bool:
    """After a restore: the path comes back within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if echoes(client, server, tries=1):
            return True
    return False


def host_network_state() -> dict[str, str]:
    """What must never change on the host: devices, addresses, routes, qdiscs, firewall."""
    commands = {
        "links": ["ip", "-o", "link", "show"],
        "addresses": ["ip", "-o", "addr", "show"],
        "routes": ["ip", "route", "show", "table", "all"],
        "qdiscs": ["tc", "qdisc", "show"],
        "nft": ["nft", "list", "ruleset"],
        "iptables": ["iptables", "-S"],
    }
    state = {}
    for key, argv in commands.items():
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        state[key] = result.stdout + result.stderr
    return state


def _drain_count(sock: socket.socket, idle: float = 0.3) -> int:
    sock.settimeout(idle)
    count = 0
    with contextlib.suppress(TimeoutError):
        while True:
            sock.recv(2048)
            count += 1
    return count


def send_udp_burst(link: Veth, count: int) -> int:
    """Send ``count`` datagrams booth -> clinic (paced); return how many arrived."""
    receiver = socket_in(link.b.ns)
    sender = socket_in(link.a.ns)
    try:
        receiver.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        receiver.bind((link.b.ip, 0))
        target = receiver.getsockname()
        for n in range(count):
            sender.sendto(n.to_bytes(4, "big"), target)
            if n % 100 == 99:
                time.sleep(0.001)
        return _drain_count(receiver)
    finally:
        sender.close()
        receiver.close()


def tcp_transfer_seconds(link: Veth, size: int) -> float:
    """Seconds to push ``size`` bytes booth -> clinic over TCP and hear it all arrived."""
    server = socket_in(link.b.ns, socket.AF_INET, socket.SOCK_STREAM)
    client = socket_in(link.a.ns, socket.AF_INET, socket.SOCK_STREAM)
    received: list[int] = []

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            total = 0
            while chunk := conn.recv(65536):
                total += len(chunk)
            received.append(total)
            conn.sendall(b"k")

    try:
        server.bind((link.b.ip, 0))
        server.listen(1)
        server.settimeout(30)
        thread = threading.Thread(target=sink)
        thread.start()
        client.settimeout(30)
        client.connect(server.getsockname())
        start = time.monotonic()
        client.sendall(bytes(size))
        client.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b"k"
        elapsed = time.monotonic() - start
        thread.join()
    finally:
        client.close()
        server.close()
    assert received == [size]
    return elapsed


# ---------------------------------------------------------------- namespaces


@pytest.mark.root
def test_namespaces_are_created_and_removed() -> None:
    require_root()
    with NetLab() as lab:
        ns = lab.loopback_only()
        assert ns.name in namespace_names()
        assert ns.name.startswith(f"boothlab-{lab.pid}-")
        assert ns.interfaces() == ["lo"]
        assert "UP" in ns.ip("-o", "link", "show", "lo")
        # A thread inside sees its namespace; the test's own thread never moved.
        assert call_in(ns, socket.if_nameindex) == [(1, "lo")]
        assert len(socket.if_nameindex()) >= len(call_in(ns, socket.if_nameindex))
        name = ns.name
    assert name not in namespace_names()


@pytest.mark.root
def test_namespaces_and_their_processes_go_even_when_the_test_fails() -> None:
    require_root()
    names: list[str] = []
    with pytest.raises(RuntimeError, match="test body failed"), NetLab() as lab:
        link = lab.booth_and_clinic()
        names = list(lab.names)
        sleeper = link.a.ns.popen(["sleep", "60"])
        orphan = subprocess.Popen(
            ["ip", "netns", "exec", link.b.ns.name, "sleep", "60"], stdin=subprocess.DEVNULL
        )  # started behind the lab's back: found through `ip netns pids`
        raise RuntimeError("test body failed")
    assert len(names) == 2
    assert not set(names) & set(namespace_names())
    assert sleeper.poll() is not None
    assert orphan.wait(timeout=5) is not None


@pytest.mark.root
def test_a_crashed_runs_namespaces_are_swept_and_live_ones_kept() -> None:
    require_root()
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = f"boothlab-{gone.pid}-0-stale"
    live = f"boothlab-{os.getpid()}-999-live"
    subprocess.run(["ip", "netns", "add", dead], check=True)
    subprocess.run(["ip", "netns", "add", live], check=True)
    try:
        assert dead in sweep_stale()
        names = namespace_names()
        assert dead not in names
        assert live in names  # its process (this one) is alive: a parallel run's, kept
    finally:
        for name in (dead, live):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def test_namespace_commands_refuse_anything_not_ours(netlab: NetLab) -> None:
    stranger = Netns(netlab, "boothlab-1-0-notmine")
    with pytest.raises(RuntimeError, match="not a live namespace of this lab"):
        stranger.run(["true"])
    with pytest.raises(RuntimeError, match="not a live namespace of this lab"):
        stranger.block()


# ---------------------------------------------------------------- link cut


def test_udp_echo_stops_when_the_link_is_cut_and_returns_when_restored(
    booth_clinic: Veth,
) -> None:
    link = booth_clinic
    client = socket_in(link.a.ns)
    client.settimeout(ECHO_TIMEOUT_S)
    with client, udp_echo(link.b) as server:
        assert echoes(client, server)

        link.cut()  # silent: the sender sees nothing wrong
        client.sendto(b"into the void", server)
        assert not echoes(client, server)

        link.restore()
        assert echoes(client, server)

        link.a.ns.link_down(link.a.dev)  # harsher: no route at all
        with pytest.raises(OSError):
            client.sendto(b"x", server)
        assert not echoes(client, server)

        link.a.ns.link_up(link.a.dev)
        assert eventually_echoes(client, server)


def test_blocking_udp_keeps_tcp_up(booth_clinic: Veth) -> None:
    """A UDP block is what "media stops, hub link up" looks like."""
    link = booth_clinic
    link.cut(proto="udp")
    assert tcp_transfer_seconds(link, 10_000) < 5
    client = socket_in(link.a.ns)
    client.settimeout(ECHO_TIMEOUT_S)
    with client, udp_echo(link.b) as server:
        assert not echoes(client, server)
        link.restore()
        assert echoes(client, server)


# ---------------------------------------------------------------- loss


def test_loss_of_30_percent_measures_as_about_30_percent(booth_clinic: Veth) -> None:
    count = 2000
    assert send_udp_burst(booth_clinic, count) >= count * 0.99  # baseline: no loss

    booth_clinic.b.ns.loss(0.3, dev=booth_clinic.b.dev)
    arrived = send_udp_burst(booth_clinic, count)
    lost = 1 - arrived / count
    assert 0.22 < lost < 0.38, f"lost {lost:.1%}"

    booth_clinic.b.ns.loss(0)
    assert send_udp_burst(booth_clinic, count) >= count * 0.99


# ---------------------------------------------------------------- bandwidth


def test_tbf_limits_throughput(booth_clinic: Veth) -> None:
    link = booth_clinic
    size = 256 * 1024
    unlimited = tcp_transfer_seconds(link, size)

    link.a.ns.rate_limit(link.a.dev, rate="4mbit", burst="32kb", latency="100ms")
    limited = tcp_transfer_seconds(link, size)
    # 4 Mbit/s = 500 kB/s: 256 kB take ~0.45 s after the burst. Unlimited veth: ~ms.
    assert limited > 0.25, f"limited transfer took only {limited:.3f} s"
    assert limited > 4 * unlimited, f"limited {limited:.3f} s vs unlimited {unlimited:.3f} s"

    link.a.ns.unlimit(link.a.dev)
    assert tcp_transfer_seconds(link, size) < limited / 2


# ---------------------------------------------------------------- host untouched


def test_impairments_never_touch_the_host(netlab: NetLab) -> None:
    before = host_network_state()
    link = netlab.booth_and_clinic()
    lo = netlab.loopback_only()
    for ns in (link.a.ns, link.b.ns, lo):
        dev = link.a.dev if ns is not lo else "lo"
        ns.block()
        ns.loss(0.5, direction="both")
        ns.rate_limit(dev)
    link.cut()
    assert "numgen random" in lo.run(["nft", "list", "ruleset"]).stdout
    assert host_network_state() == before
    link.restore()
    # What is left: block (in) and loss (in and out).
    assert link.a.ns.run(["nft", "list", "ruleset"]).stdout.count("drop") == 3
    for ns in (link.a.ns, link.b.ns, lo):
        ns.clear_impairments()
        assert ns.run(["nft", "list", "ruleset"]).stdout == ""
        assert "tbf" not in ns.run(["tc", "qdisc", "show"]).stdout
    assert host_network_state() == before


# ---------------------------------------------------------------- asyncio in a namespace


def test_an_asyncio_loop_runs_inside_a_namespace(booth_clinic: Veth) -> None:
    link = booth_clinic

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.DatagramTransport, transport)

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data, addr)

    async def serve() -> tuple[asyncio.DatagramTransport, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(link.b.ip, 0))
        return transport, transport.get_extra_info("sockname")

    async def devices_seen_by_a_child_and_the_executor() -> tuple[str, list[str]]:
        process = await asyncio.create_subprocess_exec(
            "ip", "-o", "link", "show", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        names = await asyncio.get_running_loop().run_in_executor(None, socket.if_nameindex)
        return out.decode(), [name for _, name in names]

    with NetnsLoop(link.b.ns) as clinic:
        transport, address = clinic.run(serve())
        try:
            client = socket_in(link.a.ns)
            client.settimeout(ECHO_TIMEOUT_S)
            with client:
                assert echoes(client, address)
            listing, executor_view = clinic.run(devices_seen_by_a_child_and_the_executor())
            assert "eth0" not in listing and link.b.dev in listing
            assert executor_view == ["lo", link.b.dev]
        finally:
            clinic.loop.call_soon_threadsafe(transport.close)


# ---------------------------------------------------------------- the delay relay (no root)


class _EchoProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((time.monotonic(), data))


@contextlib.asynccontextmanager
async def _echo_server() -> AsyncIterator[tuple[tuple[str, int], _EchoProtocol]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        _EchoProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        yield transport.get_extra_info("sockname"), protocol
    finally:
        transport.close()


@contextlib.asynccontextmanager
async def _client(
    remote: tuple[str, int],
) -> AsyncIterator[tuple[asyncio.DatagramTransport, _Client]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Client, remote_addr=remote)
    try:
        yield transport, protocol
    finally:
        transport.close()


async def _rtts(remote: tuple[str, int], count: int = 10) -> list[float]:
    times = []
    async with _client(remote) as (transport, protocol):
        for n in range(count):
            start = time.monotonic()
            transport.sendto(str(n).encode())
            arrived, data = await asyncio.wait_for(protocol.queue.get(), 5)
            assert data == str(n).encode()
            times.append(arrived - start)
    return times


def test_relay_adds_the_configured_delay_each_way() -> None:
    async def scenario() -> tuple[float, float]:
        async with _echo_server() as (server, _):
            direct = await _rtts(server)
            async with UdpRelay(server, delay=0.05) as relay:
                relayed = await _rtts(relay.address)
        return min(direct), statistics.median(relayed) - statistics.median(direct)

    fastest_direct, added = asyncio.run(scenario())
    assert fastest_direct < 0.02
    assert 0.099 <= added < 0.2, f"relay added {added * 1000:.1f} ms round trip, want ~100"


def test_relay_jitter_varies_delay_but_keeps_order() -> None:
    async def scenario() -> tuple[list[float], list[int]]:
        async with _echo_server() as (server, _), UdpRelay(server, seed=7) as relay:
            relay.to_target.delay, relay.to_target.jitter = 0.03, 0.02
            async with _client(relay.address) as (transport, protocol):
                sent = {}
                for n in range(40):
                    sent[n] = time.monotonic()
                    transport.sendto(n.to_bytes(2, "big"))
                    await asyncio.sleep(0.002)
                delays, order = [], []
                for _ in range(40):
                    arrived, data = await asyncio.wait_for(protocol.queue.get(), 5)
                    n = int.from_bytes(data, "big")
                    order.append(n)
                    delays.append(arrived - sent[n])
        return delays, order

    delays, order = asyncio.run(scenario())
    assert order == sorted(order)
    assert min(delays) >= 0.0099
    assert max(delays) - min(delays) > 0.01  # it does vary
    assert max(delays) < 0.15


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.001)


def test_relay_loses_the_configured_share_and_keeps_clients_apart() -> None:
    async def scenario() -> tuple[int, int, list[bytes], list[bytes], int]:
        async with _echo_server() as (server, echo), UdpRelay(server, seed=1) as relay:
            relay.to_target.loss = 0.3
            async with _client(relay.address) as (one, ones), _client(relay.address) as pair:
                two, twos = pair

                def relay_saw() -> int:
                    return relay.sent.dropped + relay.sent.forwarded

                def echoed() -> int:
                    return ones.queue.qsize() + twos.queue.qsize()

                for n in range(1, 1001):
                    (one if n % 2 else two).sendto(b"one" if n % 2 else b"two")
                    if n % 50 == 0:  # let the relay keep up: no socket-buffer overflows
                        await _until(lambda: relay_saw() == n)  # noqa: B023 - awaited here
                await _until(lambda: echoed() == relay.sent.forwarded)
                got_one = [ones.queue.get_nowait()[1] for _ in range(ones.queue.qsize())]
                got_two = [twos.queue.get_nowait()[1] for _ in range(twos.queue.qsize())]
        return relay.sent.dropped, relay.sent.forwarded, got_one, got_two, len(echo.received)

    dropped, forwarded, got_one, got_two, echoed = asyncio.run(scenario())
    assert dropped + forwarded == 1000
    assert 0.22 < dropped / 1000 < 0.38
    assert echoed == forwarded == len(got_one) + len(got_two)
    assert set(got_one) == {b"one"} and set(got_two) == {b"two"}


# ---------------------------------------------------------------- without root


@pytest.mark.parametrize("ci", ["", "1"])
def test_without_root_namespace_tests_skip_locally_and_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected, match="needs root"):
        require_root()

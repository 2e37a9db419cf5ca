"""Network namespaces for end-to-end tests: private links we can cut, thin and lose.

A call test needs a network it may break without breaking the machine's. Every
namespace here is made by :class:`NetLab`, named ``boothlab-<pid>-<n>-<label>``
(so parallel runs never clash) and removed on exit, failure included, together
with every process still inside it; a run that crashed leaves namespaces whose
pid is dead, and the next :class:`NetLab` sweeps them (pids are those of this
machine's pid namespace: don't share /run/netns with containers running this).
No command here runs in the host's namespace: every ``ip``, ``tc`` and ``nft``
call is ``ip -n NAME``/``ip netns exec NAME`` on a namespace this lab made, and
is refused if that namespace is the test process's or PID 1's. Veth pairs are
created straight inside their namespaces, so not even a device name appears on
the host.

Impairments (undone by :meth:`Netns.clear_impairments`, and gone anyway with the
namespace):

- silence: an nftables DROP on input (:meth:`Netns.block`, :meth:`Veth.cut`)
  makes a media path go quiet the way a firewall does: ``sendto`` still
  succeeds, nothing arrives, no ICMP comes back. ``proto="udp"`` keeps TCP (the
  hub link) up. :meth:`Netns.link_down` is the harsher cut: the sender gets
  ``ENETUNREACH``.
- random loss: nftables ``numgen random`` (:meth:`Netns.loss`).
- bandwidth: ``tc qdisc ... tbf`` on a device's egress (:meth:`Netns.rate_limit`).
- delay and jitter: the kernel has no ``netem``; use :mod:`tests.udp_relay`.

Running code inside a namespace. Linux keeps the network namespace per
*thread*; a socket belongs for its whole life to the namespace of the thread
that created it, and a child process to that of the thread that forked it. So:

- :func:`call_in` runs a function on a fresh thread that has entered the
  namespace (``setns`` through ctypes: ``os.setns`` is Python 3.12+);
  :func:`socket_in` uses it to hand back a socket that lives in the namespace
  and can be used from any thread.
- :class:`NetnsLoop` is an asyncio loop on such a thread, with a default
  executor whose threads enter the namespace too. aiortc/aioice, aiohttp,
  servers, ``asyncio.create_subprocess_exec``: all of it lands in the
  namespace. Drive it from a sync test with :meth:`NetnsLoop.run`; several
  loops in different namespaces can run at once.
- :meth:`Netns.popen` starts a separate program under ``ip netns exec``.

The pytest main thread never changes namespace. (Our threads inside a namespace
are invisible to ``ip netns pids``, which looks at main threads only.)

Usage::

    def test_media_stops(booth_clinic: Veth) -> None:   # fixture: needs root
        booth, clinic = booth_clinic.a, booth_clinic.b  # 10.77.1.1 / 10.77.1.2
        with NetnsLoop(booth.ns) as loop:
            loop.run(start_booth(hub=f"wss://{clinic.ip}:8443"))
            booth_clinic.cut(proto="udp")                # media silent, hub link up
            clinic.ns.loss(0.3)                          # or: 30 % of UDP lost
            booth.ns.rate_limit(booth.dev, "500kbit")    # or: a thin uplink
            booth_clinic.restore()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

PREFIX = "boothlab"
NETNS_DIR = Path("/run/netns")
NFT_TABLE = "boothlab"
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT_S = 15.0
STOP_GRACE_S = 3.0
HOW_TO_RUN = "run as root: `sudo .venv/bin/python -m pytest tests/e2e`"

_NAME = re.compile(rf"^{PREFIX}-(\d+)-")
_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")
Direction = Literal["in", "out", "both"]


class NetlabError(RuntimeError):
    """A namespace command failed; carries its stderr."""


def require_root(reason: str = "network namespaces") -> None:
    """Skip outside CI when not root; in CI (``CI`` set) a missing root is a failure."""
    missing = [tool for tool in ("ip", "tc", "nft") if shutil.which(tool) is None]
    if os.geteuid() == 0 and not missing:
        return
    why = (
        f"needs {', '.join(missing)} (apt-get install iproute2 nftables)"
        if missing and os.geteuid() == 0
        else f"needs root for {reason}; {HOW_TO_RUN}"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set, so this is not skipped)", pytrace=False)
    pytest.skip(why)


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    if check and result.returncode != 0:
        raise NetlabError(f"{' '.join(argv)} -> {result.returncode}: {result.stderr.strip()}")
    return result


def _ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def enter_netns(path: Path | str) -> None:
    """Move the *calling thread* into the namespace mounted at ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pids_in(name: str) -> list[int]:
    result = _run(["ip", "netns", "pids", name], check=False)
    own = os.getpid()
    return [int(p) for p in result.stdout.split() if p.isdigit() and int(p) != own]


def _kill_all(pids: Sequence[int]) -> None:
    """TERM, then KILL after a grace: processes that live inside one of our namespaces."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            pids = [pid for pid in pids if _pid_alive(pid) and not _is_zombie(pid)]
            if not pids:
                return
            time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def _delete_namespace(name: str) -> None:
    _kill_all(_pids_in(name))
    _run(["ip", "netns", "delete", name], check=False)


def namespace_names() -> list[str]:
    """Names of the namespaces mounted in /run/netns (anyone's)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def sweep_stale() -> list[str]:
    """Delete our namespaces whose creating process is gone (a crashed run); return them."""
    swept = []
    for name in namespace_names():
        match = _NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _delete_namespace(name)
            swept.append(name)
    return swept


@dataclass(frozen=True)
class _Rule:
    chain: Literal["input", "output"]
    text: str


def _match(proto: str | None, dev: str | None, chain: str) -> str:
    parts = []
    if proto is not None:
        parts.append(f"meta l4proto {proto}")
    if dev is not None:
        parts.append(f'{"iifname" if chain == "input" else "oifname"} "{dev}"')
    return " ".join(parts)


Chain = Literal["input", "output"]
_CHAINS: dict[Direction, tuple[Chain, ...]] = {
    "in": ("input",),
    "out": ("output",),
    "both": ("input", "output"),
}


def _chains(direction: Direction) -> tuple[Chain, ...]:
    return _CHAINS[direction]


class Netns:
    """One namespace of a :class:`NetLab`: run things in it, and impair its traffic."""

    def __init__(self, lab: NetLab, name: str) -> None:
        self.lab = lab
        self.name = name
        self._rules: dict[str, list[_Rule]] = {}
        self._shaped: set[str] = set()

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    @property
    def path(self) -> Path:
        """The bind mount that names the namespace; what ``setns`` opens."""
        return NETNS_DIR / self.name

    def _check_private(self) -> None:
        """Refuse to touch a namespace that is not one of ours, or is the host's.

        "The host's" is where this process's main thread (the test) or PID 1
        runs; a :class:`NetnsLoop` thread is of course inside ``self``.
        """
        if self.name not in self.lab.names or not self.path.exists():
            raise NetlabError(f"{self.name} is not a live namespace of this lab")
        host = {_ns_inode("/proc/self/ns/net")}
        with contextlib.suppress(OSError):  # PID 1's may be unreadable in a container
            host.add(_ns_inode("/proc/1/ns/net"))
        if _ns_inode(str(self.path)) in host:
            raise NetlabError(f"{self.name} is the host's namespace")

    def ip(self, *args: str) -> str:
        """``ip -n NAME ARGS``; returns stdout."""
        self._check_private()
        return _run(["ip", "-n", self.name, *args]).stdout

    def run(self, argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the namespace (``ip netns exec``)."""
        self._check_private()
        return _run(["ip", "netns", "exec", self.name, *argv], check=check)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a program inside the namespace; stopped when the lab closes."""
        return self.lab.run_in(self, argv, **kwargs)

    def pids(self) -> list[int]:
        """Processes whose main thread lives in this namespace (not our own)."""
        return _pids_in(self.name)

    def interfaces(self) -> list[str]:
        """Device names in the namespace, ``lo`` first."""
        out = self.ip("-o", "link", "show")
        return [line.split(":")[1].strip().partition("@")[0] for line in out.splitlines()]

    # ------------------------------------------------------------ links

    def link_down(self, dev: str) -> None:
        """Take a device down: its routes go, the sender gets ENETUNREACH."""
        self.ip("link", "set", "dev", dev, "down")

    def link_up(self, dev: str) -> None:
        """Bring a device back (addresses stay; routes come back with it)."""
        self.ip("link", "set", "dev", dev, "up")

    # ------------------------------------------------------------ nftables

    def block(
        self,
        proto: str | None = "udp",
        *,
        direction: Direction = "in",
        dev: str | None = None,
        key: str = "block",
    ) -> None:
        """Drop matching packets (``proto=None``: everything) until :meth:`unblock`.

        Dropped on the way *in*, the sender notices nothing (a silent path).
        Dropped on the way *out* (``"out"``/``"both"``), a local sender's
        ``sendto`` fails with EPERM instead: netfilter tells its own host.
        """
        self._rules[key] = [
            _Rule(chain, f"{_match(proto, dev, chain)} drop".strip())
            for chain in _chains(direction)
        ]
        self._apply_nft()

    def unblock(self, key: str = "block") -> None:
        """Undo :meth:`block` (with the same key)."""
        self._rules.pop(key, None)
        self._apply_nft()

    def loss(
        self,
        probability: float,
        proto: str | None = "udp",
        *,
        direction: Direction = "in",
        dev: str | None = None,
    ) -> None:
        """Drop each matching packet with ``probability`` (0 removes the rule).

        ``direction="in"`` by default: that loss is silent, and on ``lo`` a packet
        passes both output and input, so "both" would lose ``1 - (1 - p)**2``
        of them (and "out" makes a local ``sendto`` fail with EPERM).
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability {probability} is not in [0, 1]")
        if probability == 0.0:
            self._rules.pop("loss", None)
        else:
            threshold = round(probability * 10_000)
            self._rules["loss"] = [
                _Rule(
                    chain,
                    f"{_match(proto, dev, chain)} numgen random mod 10000 < {threshold} drop",
                )
                for chain in _chains(direction)
            ]
        self._apply_nft()

    def _apply_nft(self) -> None:
        """Replace our table with the current rules in one nft transaction."""
        rules = [rule for group in self._rules.values() for rule in group]
        lines = [f"table inet {NFT_TABLE}", f"delete table inet {NFT_TABLE}"]
        if rules:
            lines.append(f"table inet {NFT_TABLE} {{")
            for chain in ("input", "output"):
                lines.append(f"  chain {chain} {{")
                lines.append(f"    type filter hook {chain} priority filter; policy accept;")
                lines += [f"    {r.text}" for r in rules if r.chain == chain]
                lines.append("  }")
            lines.append("}")
        self._check_private()
        result = subprocess.run(
            ["ip", "netns", "exec", self.name, "nft", "-f", "-"],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        if result.returncode != 0:
            raise NetlabError(f"nft in {self.name}: {result.stderr.strip()}")

    # ------------------------------------------------------------ tc

    def rate_limit(
        self, dev: str, rate: str = "1mbit", burst: str = "16kb", latency: str = "50ms"
    ) -> None:
        """Token-bucket limit on ``dev``'s egress (``tc qdisc replace ... tbf``)."""
        self._check_private()
        tbf = ["tbf", "rate", rate, "burst", burst, "latency", latency]
        _run(["tc", "-n", self.name, "qdisc", "replace", "dev", dev, "root", *tbf])
        self._shaped.add(dev)

    def unlimit(self, dev: str) -> None:
        """Remove :meth:`rate_limit` from ``dev``."""
        self._check_private()
        _run(["tc", "-n", self.name, "qdisc", "del", "dev", dev, "root"], check=False)
        self._shaped.discard(dev)

    def clear_impairments(self) -> None:
        """Drop every nft rule and tbf qdisc this object added."""
        for dev in sorted(self._shaped):
            self.unlimit(dev)
        if self._rules:
            self._rules.clear()
            self._apply_nft()


@dataclass(frozen=True)
class Side:
    """One end of a veth pair: its namespace, device and address."""

    ns: Netns
    dev: str
    ip: str


@dataclass(frozen=True)
class Veth:
    """Two namespaces joined by a veth pair on a /24."""

    a: Side
    b: Side

    def cut(self, proto: str | None = None) -> None:
        """Make the link go silent, reversibly: nft drops what arrives at either end.

        Senders on both sides see ``sendto`` succeed; nothing gets through.
        """
        for side in (self.a, self.b):
            side.ns.block(proto, direction="in", dev=side.dev, key=f"cut:{side.dev}")

    def restore(self) -> None:
        """Undo :meth:`cut`."""
        for side in (self.a, self.b):
            side.ns.unblock(key=f"cut:{side.dev}")


class NetLab:
    """Owns namespaces, veths and processes for one test; ``close`` removes them all."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.names: list[str] = []
        self._seq = itertools.count()
        self._subnets = itertools.count(1)
        self._processes: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> NetLab:
        sweep_stale()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def namespace(self, label: str = "ns") -> Netns:
        """A new namespace with ``lo`` up and nothing else."""
        if not re.fullmatch(r"[a-z0-9]{1,16}", label):
            raise ValueError(f"label {label!r}: 1-16 lowercase letters or digits")
        name = f"{PREFIX}-{self.pid}-{next(self._seq)}-{label}"
        _run(["ip", "netns", "add", name])
        self.names.append(name)  # from here on, close() removes it
        ns = Netns(self, name)
        ns.link_up("lo")
        return ns

    def loopback_only(self, label: str = "lo") -> Netns:
        """A namespace whose only network is 127.0.0.1: nothing can leave it."""
        return self.namespace(label)

    def veth(self, a: Netns, b: Netns, *, default_route: bool = True) -> Veth:
        """Join two namespaces with a veth pair: ``10.77.k.1/24`` in a, ``.2`` in b.

        The pair is created directly inside the two namespaces (``ip -n A link
        add ... peer ... netns B``), so no device ever appears on the host.
        ``default_route`` points each side's default route at the other (where
        it has none yet): Chromium offers only loopback ICE candidates on a
        machine without a default route. A namespace does not forward, so
        nothing goes further than the peer namespace.
        """
        if a is b:
            raise ValueError("a veth pair needs two different namespaces")
        k = next(self._subnets)
        if k > 250:
            raise NetlabError("out of 10.77.k.0/24 subnets")
        dev = f"veth{k}"
        a._check_private()
        b._check_private()
        a.ip("link", "add", dev, "type", "veth", "peer", "name", dev, "netns", b.name)
        ends = (Side(a, dev, f"10.77.{k}.1"), Side(b, dev, f"10.77.{k}.2"))
        for side in ends:
            side.ns.ip("addr", "add", f"{side.ip}/24", "dev", dev)
            side.ns.link_up(dev)
        if default_route:
            for side, peer in (ends, ends[::-1]):
                if not side.ns.ip("route", "show", "default").strip():
                    side.ns.ip("route", "add", "default", "via", peer.ip, "dev", dev)
        return Veth(*ends)

    def booth_and_clinic(self) -> Veth:
        """The usual call topology: ``a`` is the booth side, ``b`` the clinic side."""
        return self.veth(self.namespace("booth"), self.namespace("clinic"))

    def run_in(self, ns: Netns, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` under ``ip netns exec`` (which execs: the pid is the program's)."""
        ns._check_private()
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        process = subprocess.Popen(["ip", "netns", "exec", ns.name, *argv], **kwargs)
        self._processes.append(process)
        return process

    def close(self) -> None:
        """Stop our processes, then delete every namespace (with its veths, rules, qdiscs)."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        for name in reversed(self.names):
            _delete_namespace(name)
        leftover = [name for name in self.names if (NETNS_DIR / name).exists()]
        self.names.clear()
        if leftover:
            raise NetlabError(f"could not delete namespaces: {leftover}")


# ---------------------------------------------------------------- running code in a namespace


def call_in(ns: Netns, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` on a new thread inside ``ns``; return or raise its result."""
    ns._check_private()
    outcome: list[Any] = []

    def body() -> None:
        try:
            enter_netns(ns.path)
            outcome.append((True, fn(*args, **kwargs)))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=body, name=f"netns:{ns.name}", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def socket_in(
    ns: Netns,
    family: socket.AddressFamily = socket.AF_INET,
    kind: socket.SocketKind = socket.SOCK_DGRAM,
) -> socket.socket:
    """A socket created inside ``ns``; it stays there, whichever thread uses it."""
    return call_in(ns, socket.socket, family, kind)


class NetnsLoop:
    """An asyncio event loop running on a thread inside a namespace.

    Sockets, servers and subprocesses made by coroutines on this loop (and by its
    default executor) live in the namespace. Use :meth:`run` from sync code,
    ``await asyncio.wrap_future(loop.submit(coro))`` from another loop.
    """

    def __init__(self, ns: Netns) -> None:
        ns._check_private()
        self.ns = ns
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"netns-loop:{ns.name}")
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _main(self) -> None:
        try:
            enter_netns(self.ns.path)
            loop = asyncio.new_event_loop()
            loop.set_default_executor(
                concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix=f"netns-exec:{self.ns.name}",
                    initializer=enter_netns,
                    initargs=(self.ns.path,),
                )
            )
            asyncio.set_event_loop(loop)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop itself (for ``call_soon_threadsafe``)."""
        assert self._loop is not None
        return self._loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
        """Run ``coro`` on the loop and wait for its result (cancels it on timeout)."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def close(self) -> None:
        """Cancel what is still running, stop the loop and join its thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()

    def __enter__(self) -> NetnsLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_async_in(ns: Netns, coro: Coroutine[Any, Any, T], timeout: float | None = 60.0) -> T:
    """``asyncio.run`` for a namespace: run ``coro`` on a fresh :class:`NetnsLoop`."""
    with NetnsLoop(ns) as loop:
        return loop.run(coro, timeout)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def netlab() -> Iterator[NetLab]:
    """A :class:`NetLab` for this test (needs root: skipped, or failed in CI, without)."""
    require_root()
    with NetLab() as lab:
        yield lab


@pytest.fixture
def lo_ns(netlab: NetLab) -> Netns:
    """A loopback-only namespace: 127.0.0.1 and nothing else."""
    return netlab.loopback_only()


@pytest.fixture
def booth_clinic(netlab: NetLab) -> Veth:
    """Booth (``.a``, 10.77.1.1) and clinic (``.b``, 10.77.1.2) namespaces on a veth."""
    return netlab.booth_and_clinic()

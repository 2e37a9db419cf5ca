"""Debian's Chromium, headless, driven by Playwright, for WebRTC tests.

Never ``playwright install``: Playwright's Python package brings its node driver
but no browser; we point it at ``/usr/bin/chromium`` (Debian 12's package).

How Chromium gets into a network namespace. Playwright's driver starts the
browser from ``executable_path`` and speaks DevTools over inherited pipes (fds 3
and 4, ``--remote-debugging-pipe``), not over TCP. So for a namespace we hand it
a two-line wrapper, ``exec ip netns exec NS /usr/bin/chromium "$@"``:
``ip netns exec`` execs and keeps the fds, and every browser process (network
service included) lives in the namespace while Python and the driver stay
where they are. Hence the test thread never changes namespace, and it works the
same with the sync API in a test (:func:`chromium_page`, :func:`chromium_in`)
as with the async API (:func:`chromium_context`) on a
:class:`tests.netlab.NetnsLoop`, which is where the Python-side peers (aiortc,
a page server, the hub) must run to be in the browser's namespace. (Connecting
over CDP/TCP from outside would not cross the namespace; the pipes do.)

Offline by construction: tests give Chromium a loopback-only or veth-only
namespace; on top of that the flags turn off background networking, updates,
sync, QUIC, and ``--host-resolver-rules`` resolves nothing but ``localhost``,
127.0.0.1, the lab's 10.77.* and the names a test maps
(``hosts={"hub.test": "10.77.1.2"}``).

``--disable-features`` is last-wins in Chromium (it does not merge repeats), and
Playwright passes its own list first. :data:`DISABLED_FEATURES` therefore repeats
Playwright 1.65.2's list and adds ours; ``test_browser_peer`` checks on the live
command line that nothing Playwright disabled got re-enabled.

Two things to know for WebRTC: only ``http://127.0.0.1``/``localhost`` (or
https) is a secure context, so serve pages there (:func:`serve_directory`) or
getUserMedia is missing; and Chromium offers only loopback candidates where
there is no default route (``NetLab.veth`` adds one).

Usage, sync (in a test; ``chromium_page`` runs in the ``lo_ns`` namespace)::

    def test_x(chromium_page: Page, lo_ns: Netns, tmp_path: Path) -> None:
        with serve_directory(lo_ns, tmp_path) as url:
            chromium_page.goto(url + "/index.html")
            stats = wait_for_js(chromium_page, "someAsyncCheck()")

    def test_y(booth_clinic: Veth, chromium_in) -> None:
        page = chromium_in(booth_clinic.b.ns, hosts={"hub.test": "10.77.1.2"}).new_page()

async (on a NetnsLoop, next to aiortc)::

    async with chromium_context(ns) as context:
        page = await context.new_page()
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext as AsyncBrowserContext
from playwright.async_api import async_playwright
from playwright.sync_api import BrowserContext, Page, Playwright, sync_playwright

from tests.needs import need
from tests.netlab import NetLab, Netns, call_in

CHROMIUM = "/usr/bin/chromium"
LAUNCH_TIMEOUT_MS = 30_000

# Playwright 1.65.2's own list (chromiumSwitches.ts), then ours.
PLAYWRIGHT_DISABLED_FEATURES = (
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
    "msForceBrowserSignIn",
    "msEdgeUpdateLaunchServicesPreferredVersion",
)
DISABLED_FEATURES = (
    *PLAYWRIGHT_DISABLED_FEATURES,
    # Host candidates as plain IPs, not random .local names nobody here can resolve.
    "WebRtcHideLocalIpsWithMdns",
    "Translate",
    "DialMediaRouteProvider",
    "AutofillServerCommunication",
    "CertificateTransparencyComponentUpdater",
)

CHROMIUM_ARGS = (
    "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-pings",
    "--use-fake-device-for-media-stream",  # camera: green test pattern; mic: beeps
    "--use-fake-ui-for-media-stream",  # getUserMedia is granted without a prompt
    "--allow-loopback-in-peer-connection",  # ICE on 127.0.0.1 (a loopback-only namespace)
    "--autoplay-policy=no-user-gesture-required",
    "--ignore-certificate-errors",  # the hub's self-signed development certificate
    "--disable-features=" + ",".join(DISABLED_FEATURES),
)


def require_chromium() -> None:
    """Skip (outside CI) or fail (in CI) when Debian's chromium is not installed."""
    need(
        Path(CHROMIUM).exists(),
        f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`)",
    )


# Chromium applies the rules to IP literals too: let the lab's own addresses through.
RESOLVABLE = ("localhost", "127.0.0.1", "10.77.*")


def resolver_rules(hosts: Mapping[str, str] | None = None) -> str:
    """``--host-resolver-rules``: the given names, the lab's addresses, nothing else."""
    rules = [f"MAP {name} {address}" for name, address in (hosts or {}).items()]
    rules.append("MAP * ~NOTFOUND")
    rules += [f"EXCLUDE {pattern}" for pattern in RESOLVABLE]
    return "--host-resolver-rules=" + ", ".join(rules)


def chromium_args(hosts: Mapping[str, str] | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The full argument list we add to Playwright's own."""
    for arg in extra:
        if arg.startswith("--disable-features"):
            raise ValueError("add features to DISABLED_FEATURES: Chromium keeps only the last")
    return [*CHROMIUM_ARGS, resolver_rules(hosts), *extra]


def netns_executable(ns: Netns, directory: Path) -> Path:
    """A wrapper that execs Chromium inside ``ns`` (see the module docstring)."""
    ns._check_private()
    wrapper = directory / f"chromium-in-{ns.name}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns.name} {CHROMIUM} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


def _launch_options(
    ns: Netns,
    workdir: Path,
    hosts: Mapping[str, str] | None,
    extra_args: Sequence[str],
) -> dict[str, Any]:
    return {
        "user_data_dir": str(workdir / "profile"),
        "executable_path": str(netns_executable(ns, workdir)),
        "headless": True,
        "args": chromium_args(hosts, extra_args),
        "ignore_https_errors": True,
        "timeout": LAUNCH_TIMEOUT_MS,
    }


@contextlib.asynccontextmanager
async def chromium_context(
    ns: Netns,
    *,
    hosts: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> AsyncIterator[AsyncBrowserContext]:
    """Async API: Chromium with a fresh profile, inside ``ns``; closed on exit.

    There is deliberately no way to start it in the host's namespace.
    """
    require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-") as tmp:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                **_launch_options(ns, Path(tmp), hosts, extra_args)
            )
            try:
                yield context
            finally:
                await context.close()


@contextlib.contextmanager
def sync_chromium_context(
    playwright: Playwright,
    ns: Netns,
    *,
    hosts: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[BrowserContext]:
    """Sync API twin of :func:`chromium_context`."""
    require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-") as tmp:
        context = playwright.chromium.launch_persistent_context(
            **_launch_options(ns, Path(tmp), hosts, extra_args)
        )
        try:
            yield context
        finally:
            context.close()


def browser_pids(ns: Netns) -> list[int]:
    """Chromium's processes inside ``ns`` (to prove where it runs)."""
    pids = []
    for pid in ns.pids():
        with contextlib.suppress(OSError):
            exe = os.readlink(f"/proc/{pid}/exe")
            if "chromium" in Path(exe).name:
                pids.append(pid)
    return pids


# ---------------------------------------------------------------- a static page server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(ns: Netns, directory: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``directory`` over HTTP from inside ``ns``; yields the base URL.

    ``http://127.0.0.1`` counts as a secure context, so getUserMedia works.
    """
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = call_in(ns, http.server.ThreadingHTTPServer, (host, 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


# ---------------------------------------------------------------- waiting on a page


def wait_for_js(page: Page, expression: str, timeout: float = 20.0, poll: float = 0.2) -> Any:
    """Evaluate ``expression`` (may be async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{expression!r} still {value!r} after {timeout} s")
        time.sleep(poll)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def playwright_sync() -> Iterator[Playwright]:
    """Playwright's sync API for this test (its node driver stays in the test's namespace)."""
    require_chromium()
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture
def chromium_in(
    netlab: NetLab, playwright_sync: Playwright
) -> Iterator[Callable[..., BrowserContext]]:
    """Factory: ``chromium_in(ns, hosts=...)`` -> a BrowserContext inside ``ns``.

    Depends on ``netlab`` so that the browsers close before their namespaces go.
    """
    with contextlib.ExitStack() as stack:

        def launch(ns: Netns, **kwargs: Any) -> BrowserContext:
            return stack.enter_context(sync_chromium_context(playwright_sync, ns, **kwargs))

        yield launch


@pytest.fixture
def chromium_page(chromium_in: Callable[..., BrowserContext], lo_ns: Netns) -> Page:
    """A page in headless Chromium running inside the test's loopback-only namespace."""
    context = chromium_in(lo_ns)
    return context.pages[0] if context.pages else context.new_page()

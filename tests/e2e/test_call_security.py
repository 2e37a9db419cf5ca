"""Who may join, end to end: booths prove themselves to the hub, the hub to booths, staff sign in.

Real booth processes with a wrong credential, or pinning a certificate that
is not the hub's, stay out: the console never shows them online (and each
has a twin, the same booth set up right, which the console does show). The
console page sends whoever has not signed in to ``/login``, and its
WebSocket refuses a browser without a session (twin: the signed-in page's
WebSocket opens).

A call's media is protected by DTLS against the fingerprint in the signalled
SDP; a tampered fingerprint is covered in ``tests/kiosk/call/test_engine.py``
(``test_an_answer_whose_fingerprint_does_not_match_the_certificate_carries_no_media``
and its twins), not repeated here.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.sync_api import sync_playwright

from tests.browser import require_chromium, sync_chromium_context
from tests.e2e.stack import (
    BOOTH_ID,
    BoothProcess,
    Console,
    Stack,
    booth_config,
    clinic_stack,
    write_private,
)
from tests.netlab import NetnsLoop, require_root

pytestmark = pytest.mark.root

WRONG_TOKEN_BOOTH = "e2e-booth-2"
WRONG_PIN_BOOTH = "e2e-booth-3"
SHUT_OUT_WATCH_S = 4.0
"""Long enough for several reconnect attempts (backoff 0.5 s, 1 s, 2 s)."""

WEBSOCKET = """() => new Promise((resolve) => {
  const ws = new WebSocket(`wss://${location.host}/console`);
  const timer = setTimeout(() => resolve("no answer"), 5000);
  ws.onopen = () => { clearTimeout(timer); ws.close(); resolve("open"); };
  ws.onclose = (event) => { clearTimeout(timer); resolve(`closed ${event.code}`); };
})"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_root()
    require_chromium()
    with (
        sync_playwright() as playwright,
        clinic_stack(
            tmp_path_factory.mktemp("call-security"),
            playwright,
            booths=(BOOTH_ID, WRONG_TOKEN_BOOTH, WRONG_PIN_BOOTH),
        ) as stack,
    ):
        stack.extra["playwright"] = playwright
        yield stack


def _booth(stack: Stack, booth_id: str, *, token: str, fingerprint: str, name: str) -> BoothProcess:
    credential = stack.workdir / f"{name}-credential"
    write_private(credential, token + "\n")
    config = booth_config(
        stack.workdir / f"{name}.toml",
        hub_url=f"wss://{stack.link.b.ip}:{stack.hub.port}/booth",
        fingerprint=fingerprint,
        credential=credential,
        booth_id=booth_id,
    )
    return BoothProcess(stack.booth_ns, config, stack.workdir / f"{name}.log")


def _online(stack: Stack, booth_id: str) -> bool:
    return bool(
        stack.console.value(
            f"t.snapshot.booths.some((b) => b.booth_id === '{booth_id}' && b.online)"
        )
    )


def test_booths_with_a_wrong_credential_or_a_wrong_pin_stay_out(stack: Stack) -> None:
    tokens = stack.files.tokens
    wrong_pin = secrets.token_hex(32)
    assert wrong_pin != stack.files.fingerprint
    impostor = _booth(
        stack,
        WRONG_TOKEN_BOOTH,
        token=secrets.token_urlsafe(32),  # well formed, but not the one the hub issued
        fingerprint=stack.files.fingerprint,
        name="wrong-token",
    )
    fooled = _booth(
        stack,
        WRONG_PIN_BOOTH,
        token=tokens[WRONG_PIN_BOOTH],  # its real credential, never sent to an unpinned hub
        fingerprint=wrong_pin,
        name="wrong-pin",
    )
    try:
        deadline = time.monotonic() + SHUT_OUT_WATCH_S
        while time.monotonic() < deadline:
            assert not _online(stack, WRONG_TOKEN_BOOTH), "a booth with a wrong token got in"
            assert not _online(stack, WRONG_PIN_BOOTH), "a booth pinning another cert got in"
            time.sleep(0.2)
        assert "hello refused (unauthorized)" in impostor.log_text()
        assert "does not match [hub] certificate_sha256; refused it" in fooled.log_text()
        assert "connected" not in impostor.log_text() + fooled.log_text()
        for booth in (impostor, fooled):
            status = booth.status()
            # The booth knows it has no hub: no visit can start that would go nowhere.
            assert status["network_up"] is False and status["state"] == "out_of_service", status
        assert _online(stack, BOOTH_ID)  # the console was watching all along
    finally:
        impostor.stop()
        fooled.stop()

    # Twins: the same booths set up right are let in.
    honest = _booth(
        stack,
        WRONG_TOKEN_BOOTH,
        token=tokens[WRONG_TOKEN_BOOTH],
        fingerprint=stack.files.fingerprint,
        name="right-token",
    )
    pinned = _booth(
        stack,
        WRONG_PIN_BOOTH,
        token=tokens[WRONG_PIN_BOOTH],
        fingerprint=stack.files.fingerprint,
        name="right-pin",
    )
    try:
        for booth_id in (WRONG_TOKEN_BOOTH, WRONG_PIN_BOOTH):
            stack.console.until(
                f"t.snapshot.booths.some((b) => b.booth_id === '{booth_id}' && b.online)",
                timeout=15,
            )
        for booth in (honest, pinned):
            assert booth.status()["state"] == "attract"
    finally:
        honest.stop()
        pinned.stop()


def test_the_console_wants_a_sign_in_and_its_websocket_refuses_without_one(stack: Stack) -> None:
    base = stack.hub.base
    # A fresh browser, no session: sent to the sign-in form, and /console will not open.
    with sync_chromium_context(stack.extra["playwright"], stack.clinic_ns) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(f"{base}/")
        assert page.url == f"{base}/login"
        assert page.locator('[data-testid="login-form"]').is_visible()
        assert page.evaluate(WEBSOCKET).startswith("closed"), "a console without a session opened"
        page.goto(f"{base}/static/console.js")  # the script is public; what it reaches is not
        page.goto(f"{base}/")
        assert page.url == f"{base}/login"
    # The same refusal seen from outside a browser: 401 before the upgrade.
    assert _console_handshake(stack, cookie=None) == 401

    # Twin: the signed-in console's own page opens it.
    signed_in: Console = stack.console
    assert signed_in.page.evaluate(WEBSOCKET) == "open"
    assert signed_in.value("t.state") == "lobby"


def _console_handshake(stack: Stack, cookie: str | None) -> int:
    """The HTTP status of a WebSocket handshake to /console from inside the clinic namespace."""
    url = f"wss://127.0.0.1:{stack.hub.port}/console"
    headers = {"Origin": stack.hub.base}
    if cookie is not None:
        headers["Cookie"] = cookie

    async def attempt() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                ws = await session.ws_connect(url, headers=headers, ssl=False)
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            with contextlib.suppress(Exception):
                await ws.close()
            return 101

    with NetnsLoop(stack.clinic_ns) as loop:
        return loop.run(attempt(), timeout=20)


def test_logs_name_no_secret(stack: Stack) -> None:
    """What the refused booths wrote never holds a credential."""
    for token in stack.files.tokens.values():
        for log in Path(stack.workdir).glob("*.log"):
            assert token not in log.read_text(errors="replace"), log.name

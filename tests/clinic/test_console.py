"""The clinician side: sign-in, the console page, and who may open ``/console``.

Every protection has a twin showing the same request passes when the one
thing checked is right: the right Origin, a live session, another username.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from clinic.console import SESSION_COOKIE
from clinic.protocol import (
    BoothState,
    Door,
    Error,
    ErrorCode,
    JoinQueue,
    LeaveQueue,
    Presence,
    Snapshot,
    new_id,
)
from clinic.store import ScryptParams, scrypt_kdf
from tests.clinic.hubtest import (
    PASSWORD,
    Clock,
    Db,
    Server,
    Tls,
    eventually,
    open_db,
    run,
    session_token,
)

# ------------------------------------------------------------- pages


def test_every_page_carries_the_security_headers(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        for path in ("/login", "/", "/static/console.js", "/static/nothing.js"):
            async with await server.get(path) as reply:
                csp = reply.headers["Content-Security-Policy"]
                assert "script-src 'self'" in csp and "unsafe-inline" not in csp
                assert "connect-src 'self' wss:" in csp
                assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
                assert reply.headers["X-Frame-Options"] == "DENY"
                assert reply.headers["Referrer-Policy"] == "no-referrer"

    run(db, tls, scenario)


def test_the_login_page_is_a_form_posting_to_login(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        async with await server.get("/login") as reply:
            assert reply.status == 200
            page = await reply.text()
        assert '<form method="post" action="/login"' in page
        assert 'name="username"' in page and 'type="password"' in page
        assert "<script" not in page  # nothing inline, and the form needs no script

    run(db, tls, scenario)


def test_the_console_page_needs_a_session(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        async with await server.get("/") as reply:
            assert (reply.status, reply.headers["Location"]) == (303, "/login")
        async with await server.get("/", token="x" * 43) as reply:
            assert reply.status == 303
        token = await server.sign_in()
        async with await server.get("/", token=token) as reply:  # the twin
            assert reply.status == 200
            assert reply.headers["Cache-Control"] == "no-store"
            page = await reply.text()
        assert '<script src="/static/console.js" defer></script>' in page
        assert "Dr. Ana Rivera" in page
        assert 'data-testid="queue"' in page and 'data-testid="alarm-banner"' in page

    run(db, tls, scenario)


def test_only_the_console_assets_are_served(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        async with await server.get("/static/console.js") as reply:
            assert reply.status == 200
            assert reply.content_type == "text/javascript"
            assert "window.consoleTest" in await reply.text()
        async with await server.get("/static/console.css") as reply:
            assert (reply.status, reply.content_type) == (200, "text/css")
        for path in ("/static/console.html", "/static/login.html", "/static/..%2fconsole.py"):
            async with await server.get(path) as reply:
                assert reply.status == 404, path

    run(db, tls, scenario)


def test_the_page_uses_no_outside_resources_and_no_public_stun() -> None:
    web = Path(__file__).resolve().parents[2] / "clinic" / "web"
    for name in ("console.html", "console.js", "console.css", "login.html"):
        text = (web / name).read_text()
        assert "http://" not in text and "https://" not in text, name
        assert "stun:" not in text, name
        assert "innerHTML" not in text, name
    assert "<script>" not in (web / "console.html").read_text()  # no inline script


# ------------------------------------------------------------ sign-in


def test_signing_in_sets_a_strict_session_cookie(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        async with await server.post_login("a.rivera", PASSWORD) as reply:
            assert (reply.status, reply.headers["Location"]) == (303, "/")
            (header,) = reply.headers.getall("Set-Cookie")
            token = session_token(reply)
        attributes = {a.strip().lower() for a in header.split(";")[1:]}
        assert header.startswith(f"{SESSION_COOKIE}=")
        assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes
        assert not any(a.startswith(("domain", "max-age", "expires")) for a in attributes)
        user = db.store.session_user(token, server.hub.clock())
        assert user is not None and user.username == "a.rivera"

    run(db, tls, scenario)


@pytest.mark.parametrize(
    ("username", "password"),
    [("a.rivera", "not the password at all"), ("nobody", PASSWORD), ("a.rivera", "x" * 300)],
    ids=["wrong-password", "unknown-user", "too-long"],
)
def test_a_wrong_password_is_refused(db: Db, tls: Tls, username: str, password: str) -> None:
    async def scenario(server: Server) -> None:
        async with await server.post_login(username, password) as reply:
            assert reply.status == 401
            assert "Set-Cookie" not in reply.headers
            page = await reply.text()
        assert "do not match an account" in page
        assert password not in page

    run(db, tls, scenario)


@pytest.mark.parametrize(
    ("origin", "fetch_site"),
    [
        (None, None),
        ("https://evil.example", None),
        ("https://evil.example", "same-origin"),  # a real Origin is believed first
        ("http://127.0.0.1", None),
        ("null", None),
        ("null", "cross-site"),
        (None, "same-site"),
    ],
)
def test_a_sign_in_from_another_origin_is_refused(
    db: Db, tls: Tls, origin: str | None, fetch_site: str | None
) -> None:
    """The twins: test_signing_in_sets_a_strict_session_cookie (our Origin) and the next test."""

    async def scenario(server: Server) -> None:
        async with await server.post_login(
            "a.rivera", PASSWORD, origin=origin, fetch_site=fetch_site
        ) as reply:
            assert reply.status == 403
            assert "Set-Cookie" not in reply.headers
            assert "sign-in page" in await reply.text()

    run(db, tls, scenario)


def test_a_form_posted_with_a_null_origin_from_our_own_page_is_accepted(db: Db, tls: Tls) -> None:
    """Referrer-Policy: no-referrer makes browsers post ``Origin: null``; Sec-Fetch-Site decides."""

    async def scenario(server: Server) -> None:
        async with await server.post_login(
            "a.rivera", PASSWORD, origin="null", fetch_site="same-origin"
        ) as reply:
            assert reply.status == 303
            assert session_token(reply)

    run(db, tls, scenario)


def test_repeated_wrong_passwords_slow_that_username_down(db: Db, tls: Tls) -> None:
    clock = Clock()

    async def scenario(server: Server) -> None:
        for _ in range(3):  # two free misses; the third starts a wait
            async with await server.post_login("a.rivera", "wrong wrong wrong wrong") as reply:
                assert reply.status == 401
        async with await server.post_login("a.rivera", PASSWORD) as reply:
            assert reply.status == 429  # even the right password waits
            assert "Too many wrong passwords" in await reply.text()
            assert "Set-Cookie" not in reply.headers
        async with await server.post_login("b.chen", "purple monkey dishwasher lamp") as reply:
            assert reply.status == 303  # the twin: another username is not slowed
        clock.now += 1.5
        async with await server.post_login("a.rivera", PASSWORD) as reply:
            assert reply.status == 303  # and after the wait, the right password works

    run(db, tls, scenario, clock=clock)


def test_parallel_guesses_at_one_username_are_checked_one_at_a_time(
    tmp_path: Path, tls: Tls
) -> None:
    """Otherwise a burst of guesses would all be checked before the first failure counts."""
    checked: list[bytes] = []

    def slow_kdf(password: bytes, salt: bytes, params: ScryptParams) -> bytes:
        checked.append(password)
        time.sleep(0.2)
        return scrypt_kdf(password, salt, params)

    slow = open_db(tmp_path / "slow.sqlite3", kdf=slow_kdf)

    async def scenario(server: Server) -> None:
        async def guess(username: str, n: int) -> int:
            async with await server.post_login(username, f"guess number {n} is wrong") as reply:
                return reply.status

        checked.clear()
        same = await asyncio.gather(*(guess("a.rivera", n) for n in range(5)))
        assert sorted(same) == [401, 429, 429, 429, 429]
        assert len(checked) == 1
        checked.clear()  # the twin: different usernames are checked side by side
        names = ("a.rivera", "b.chen", "c.nobody", "d.nobody", "e.nobody")
        other = await asyncio.gather(*(guess(name, 9) for name in names))
        assert other == [401] * 5
        assert len(checked) == 5

    with slow.store:
        run(slow, tls, scenario)


def test_the_login_page_sends_a_signed_in_clinician_to_the_console(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        token = await server.sign_in()
        async with await server.get("/login", token=token) as reply:
            assert (reply.status, reply.headers["Location"]) == (303, "/")

    run(db, tls, scenario)


def test_signing_out_ends_the_session_and_closes_its_consoles(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        token = await server.sign_in()
        console = await server.console(token)
        assert isinstance(await console.recv(), Snapshot)
        headers = {"Cookie": f"{SESSION_COOKIE}={token}"}

        async def logout(origin: str) -> aiohttp.ClientResponse:
            return await server.session.post(
                f"{server.base}/logout",
                headers={**headers, "Origin": origin},
                ssl=tls.client(),
                allow_redirects=False,
            )

        async with await logout("https://evil.example") as reply:
            assert reply.status == 403
        assert db.store.session_user(token, server.hub.clock()) is not None
        async with await logout(server.origin) as reply:  # the twin
            assert (reply.status, reply.headers["Location"]) == (303, "/login")
            (cleared,) = reply.headers.getall("Set-Cookie")
        assert cleared.startswith(f'{SESSION_COOKIE}=""') and "Secure" in cleared
        assert db.store.session_user(token, server.hub.clock()) is None
        assert await console.closed()
        async with await server.get("/", token=token) as reply:
            assert reply.status == 303

    run(db, tls, scenario)


# ---------------------------------------------------- the console socket


def test_the_console_socket_needs_a_session(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        for token in ("", "x" * 43):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await server.console(token)
            assert info.value.status == 401
        token = await server.sign_in()
        db.store.end_session(token)
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await server.console(token)
        assert info.value.status == 401
        console = await server.console()  # the twin: a live session
        assert isinstance(await console.recv(), Snapshot)
        await console.ws.close()

    run(db, tls, scenario)


@pytest.mark.parametrize("origin", [None, "https://evil.example", "https://127.0.0.1:1"])
def test_the_console_socket_refuses_another_origin(db: Db, tls: Tls, origin: str | None) -> None:
    async def scenario(server: Server) -> None:
        token = await server.sign_in()
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await server.console(token, origin=origin)
        assert info.value.status == 403
        console = await server.console(token)  # the twin: the same cookie, our own origin
        assert isinstance(await console.recv(), Snapshot)
        await console.ws.close()

    run(db, tls, scenario)


def test_a_snapshot_on_connect_and_on_every_change(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        console = await server.console()
        first = await console.recv()
        assert isinstance(first, Snapshot) and first.queue == ()
        # Registered booths that never connected yet are listed, offline.
        assert [(b.booth_id, b.online) for b in first.booths] == [
            ("booth-1", False),
            ("booth-2", False),
        ]

        booth, _ = await server.booth()
        snap = await console.snapshot_where(lambda s: s.booths[0].online)
        info, other = snap.booths
        assert not other.online
        assert (info.booth_id, info.name, info.site, info.online) == (
            "booth-1",
            "Riverside booth",
            "Riverside Library",
            True,
        )
        await booth.send(Presence(id=new_id(), state=BoothState.IDLE, door=Door.OPEN))
        await console.snapshot_where(lambda s: s.booths[0].door is Door.OPEN)
        await booth.send(Presence(id=new_id(), state=BoothState.EMERGENCY, door=Door.OPEN))
        await console.snapshot_where(lambda s: s.booths[0].state is BoothState.EMERGENCY)

        await booth.send(JoinQueue(id=new_id(), language="es", audio_only=True))
        snap = await console.snapshot_where(lambda s: len(s.queue) == 1)
        (entry,) = snap.queue
        assert (entry.booth_id, entry.language, entry.audio_only, entry.has_appointment) == (
            "booth-1",
            "es",
            True,
            False,
        )
        await booth.send(LeaveQueue(id=new_id()))
        await console.snapshot_where(lambda s: s.queue == ())
        await booth.ws.close()
        await console.snapshot_where(lambda s: not s.booths[0].online)
        await console.ws.close()

    run(db, tls, scenario)


def test_bad_console_messages_get_errors_and_the_connection_stays(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        console = await server.console()
        assert isinstance(await console.recv(), Snapshot)
        frames = {
            "{not json": ErrorCode.NOT_JSON,
            '{"v":1,"type":"hello","id":"h1","booth_id":"booth-1",'
            '"token":"aaaaaaaaaaaaaaaaaaaa","firmware":"1"}': ErrorCode.NOT_ALLOWED,
            '{"v":1,"type":"call_state","id":"c1","call_id":"x","event":"door_open"}': (
                ErrorCode.NOT_ALLOWED
            ),
            '{"v":1,"type":"call_state","id":"c2","call_id":"x","event":"booth_online"}': (
                ErrorCode.NOT_ALLOWED
            ),
            '{"v":1,"type":"answer_booth","id":"a1"}': ErrorCode.MISSING_FIELD,
            '{"v":1,"type":"ack_alert","id":"k1","alert_id":"nope"}': ErrorCode.UNKNOWN_ALERT,
        }
        for frame, code in frames.items():
            await console.ws.send_str(frame)
            err = await console.expect(Error)
            assert err.code is code, frame
            assert await console.drain() == []  # still open, nothing else pending
        await console.ws.send_bytes(b"{}")
        assert (await console.expect(Error)).code is ErrorCode.NOT_JSON
        await console.ws.close()

    run(db, tls, scenario)


def test_a_console_that_closes_is_forgotten(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        console = await server.console()
        await console.recv()
        assert len(server.hub.consoles) == 1
        await console.ws.close()
        await eventually(lambda: server.hub.consoles == [])

    run(db, tls, scenario)

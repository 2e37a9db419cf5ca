"""The hub's clinician side: sign-in, the console page and the ``/console`` WebSocket.

A clinician signs in at ``/login`` (a form; the password is checked with
scrypt off the event loop, and wrong passwords are slowed down per username)
and gets a session cookie: ``__Host-`` prefixed, ``Secure``, ``HttpOnly``,
``SameSite=Strict``, for the browser session only. ``/`` serves the console
page to a signed-in clinician and sends anyone else to ``/login``.

The page's WebSocket, ``/console``, is refused before the upgrade without a
valid session (401) or from a page that is not the hub's own (403, by
``Origin``): a session cookie alone must never let another site drive a
console. Forms that change state (sign in, sign out) must come from the hub's
own pages too (``Origin``, or ``Sec-Fetch-Site`` where the browser sends
``Origin: null``), on top of ``SameSite=Strict``.

Every response carries a strict Content-Security-Policy (scripts and styles
from the hub only, no inline script, nothing framed), ``X-Frame-Options:
DENY`` and ``Referrer-Policy: no-referrer``. The page's own files are in
``clinic/web`` and need no build step.

Console frames go through :func:`clinic.protocol.parse` (``sender="console"``)
exactly as booth frames do: a refused one gets an ``error`` reply and the
connection stays open. Logs carry message types, ids and error codes only;
never a password, a token or a username typed at the sign-in form.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import html
import logging
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aiohttp import WSMsgType, web

from clinic import protocol
from clinic.protocol import (
    AckAlert,
    Answer,
    AnswerBooth,
    BadMessage,
    CallState,
    EndCall,
    Message,
    Offer,
    Ping,
    Pong,
    new_id,
)
from clinic.server import (
    HUB_KEY,
    WS_MAX_MSG_SIZE,
    Console,
    Hub,
    _deliver,
    _frame_text,
    _refuse,
    _send,
    alert_message,
)
from clinic.store import (
    PASSWORD_MAX_CHARS,
    USERNAME_MAX_CHARS,
    Clinician,
    CodeThrottle,
)

log = logging.getLogger(__name__)

WEB_DIR: Final = Path(__file__).resolve().parent / "web"
SESSION_COOKIE: Final = "__Host-clinic_session"
"""``__Host-``: the browser keeps it only if Secure, Path=/ and without Domain."""
MAX_BODY_BYTES: Final = 16 * 1024
"""A sign-in form is a few hundred bytes; nothing larger is read."""
SESSION_CHECK_SECONDS: Final = 30.0
"""How often an open console re-checks its session (signed out elsewhere, expired)."""
MAX_THROTTLED_NAMES: Final = 10_000

CSP: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self' blob: mediastream:",
        "connect-src 'self' wss:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(self), microphone=(self), geolocation=()",
    "Strict-Transport-Security": "max-age=31536000",
}
ASSETS: Final = {
    "console.js": "text/javascript",
    "console.css": "text/css",
}
"""The only files served from ``clinic/web`` as they are (the HTML pages are served by route)."""


# ------------------------------------------------------------ headers


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Put :data:`SECURITY_HEADERS` on every response, refusals included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:  # a WebSocket's upgrade was sent by its handler
        response.headers.update(SECURITY_HEADERS)
    return response


def own_origin(request: web.Request) -> str:
    """The hub's origin as this request reached it (what its own pages send as ``Origin``)."""
    return f"{request.scheme}://{request.host}".lower()


def same_origin(request: web.Request) -> bool:
    """True when the request's ``Origin`` is the hub's own (a WebSocket always sends it)."""
    origin = request.headers.get("Origin")
    return origin is not None and origin.lower() == own_origin(request)


def form_from_own_page(request: web.Request) -> bool:
    """True when a form was posted from one of the hub's own pages.

    Our pages are served with ``Referrer-Policy: no-referrer``, so browsers
    post their forms with ``Origin: null``; then the browser's own
    ``Sec-Fetch-Site`` (which no page can set) must say ``same-origin``.
    """
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null":
        return origin.lower() == own_origin(request)
    return request.headers.get("Sec-Fetch-Site") == "same-origin"


# ------------------------------------------------------------ sign-in


@dataclass
class LoginThrottle:
    """Wrong passwords per username, slowed as appointment codes are (:class:`CodeThrottle`).

    Kept in memory: a restart forgets it, which costs a guesser nothing they
    could not get by waiting out one delay. One check runs at a time per
    username, so parallel guesses cannot all slip in before the first
    failure counts.
    """

    by_name: dict[str, CodeThrottle] = field(default_factory=dict)
    checking: set[str] = field(default_factory=set)

    def delay(self, name: str, now: float) -> float:
        throttle = self.by_name.get(name)
        return 0.0 if throttle is None else throttle.delay(now)

    def note(self, name: str, ok: bool, now: float) -> None:
        before = self.by_name.get(name, CodeThrottle())
        after = before.after(ok, now)
        if after != before:
            self.by_name[name] = after
        if len(self.by_name) > MAX_THROTTLED_NAMES:
            self._forget(now)

    def _forget(self, now: float) -> None:
        """Drop names with nothing left to forgive, then the longest quiet, to stay bounded."""
        for name, t in list(self.by_name.items()):
            if t.delay(now) == 0 and t.misses_at(now) == 0:
                del self.by_name[name]
        if len(self.by_name) > MAX_THROTTLED_NAMES:
            oldest = sorted(self.by_name, key=lambda n: self.by_name[n].updated_at)
            for name in oldest[: len(self.by_name) - MAX_THROTTLED_NAMES]:
                del self.by_name[name]


THROTTLE_KEY: Final = web.AppKey("login_throttle", LoginThrottle)


def _page(name: str, **values: str) -> str:
    template = string.Template((WEB_DIR / name).read_text(encoding="utf-8"))
    return template.substitute({k: html.escape(v) for k, v in values.items()})


def _login_page(message: str = "", username: str = "", status: int = 200) -> web.Response:
    body = _page("login.html", message=message, username=username)
    response = web.Response(text=body, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _session_key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


async def session_of(request: web.Request) -> tuple[Clinician, str] | None:
    """The signed-in clinician and their session token, or None."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    hub = request.app[HUB_KEY]
    user = await asyncio.to_thread(hub.store.session_user, token, hub.clock())
    return None if user is None else (user, token)


async def login_form(request: web.Request) -> web.StreamResponse:
    """``GET /login``: the sign-in form (or the console, when already signed in)."""
    if await session_of(request) is not None:
        raise web.HTTPSeeOther("/")
    return _login_page()


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /login``: check the password; on success set the session cookie and go to ``/``."""
    if not form_from_own_page(request):
        log.warning("refused a sign-in from another origin")
        return _login_page(
            "This sign-in did not come from the hub's own sign-in page. "
            "Open the sign-in page again and sign in there.",
            status=403,
        )
    form = await request.post()
    username = form.get("username")
    password = form.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username:
        return _login_page("Enter your username and your password.", status=400)
    username = username.strip()
    shown = username[:USERNAME_MAX_CHARS]
    hub = request.app[HUB_KEY]
    throttle = request.app[THROTTLE_KEY]
    now = hub.clock()
    delay = throttle.delay(shown, now)
    if delay > 0:
        wait = max(1, round(delay))
        return _login_page(
            f"Too many wrong passwords for this username. Wait {wait} seconds and try again.",
            shown,
            status=429,
        )
    if shown in throttle.checking:
        return _login_page(
            "A sign-in for this username is already being checked. Try again in a moment.",
            shown,
            status=429,
        )
    too_long = len(username) > USERNAME_MAX_CHARS or len(password) > PASSWORD_MAX_CHARS
    throttle.checking.add(shown)
    try:
        user = None
        if not too_long:
            user = await asyncio.to_thread(hub.store.verify_clinician, username, password)
        throttle.note(shown, user is not None, hub.clock())
    finally:
        throttle.checking.discard(shown)
    if user is None:
        log.info("a sign-in was refused: wrong username or password")
        return _login_page(
            "That username and password do not match an account. Check both and try again.",
            shown,
            status=401,
        )
    token = await asyncio.to_thread(hub.store.new_session, user.username, hub.clock())
    log.info("a clinician signed in")
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        SESSION_COOKIE, token, path="/", secure=True, httponly=True, samesite="Strict"
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /logout``: end the session, close its consoles, forget the cookie."""
    if not form_from_own_page(request):
        log.warning("refused a sign-out from another origin")
        raise web.HTTPForbidden(text="Sign out from the console page itself.")
    hub = request.app[HUB_KEY]
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await asyncio.to_thread(hub.store.end_session, token)
        key = _session_key(token)
        for console in [c for c in hub.consoles if c.session_key == key]:
            await console.ws.close(message=b"signed out")
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    raise response


async def index(request: web.Request) -> web.StreamResponse:
    """``GET /``: the console page, for a signed-in clinician only."""
    session = await session_of(request)
    if session is None:
        raise web.HTTPSeeOther("/login")
    user, _ = session
    body = _page("console.html", display_name=user.display_name)
    response = web.Response(text=body, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


async def asset(request: web.Request) -> web.StreamResponse:
    """``GET /static/{name}``: the console's script and style sheet, nothing else."""
    name = request.match_info["name"]
    content_type = ASSETS.get(name)
    if content_type is None:
        raise web.HTTPNotFound(text="No such file.")
    body = await asyncio.to_thread((WEB_DIR / name).read_bytes)
    response = web.Response(body=body, content_type=content_type, charset="utf-8")
    response.headers["Cache-Control"] = "no-cache"
    return response


# ------------------------------------------------------- the console socket


async def _watch_session(hub: Hub, console: Console, token: str) -> None:
    """Close the console once its session ends (signed out elsewhere, or expired)."""
    while not console.ws.closed:
        await asyncio.sleep(SESSION_CHECK_SECONDS)
        user = await asyncio.to_thread(hub.store.session_user, token, hub.clock())
        if user is None:
            log.info("a console's session ended; closing it")
            await console.ws.close(message=b"session ended")
            return


async def _handle(hub: Hub, console: Console, message: Message) -> None:
    refusal: protocol.Error | None = None
    if isinstance(message, Ping):
        await _send(console.ws, Pong(id=new_id(), in_reply_to=message.id))
    elif isinstance(message, AnswerBooth):
        refusal = await hub.answer(console, message)
    elif isinstance(message, Offer | Answer | CallState | EndCall):
        refusal = await hub.relay(message, console=console)
    elif isinstance(message, AckAlert):
        refusal = await hub.ack_alert(console, message)
    elif isinstance(message, protocol.Error):
        log.info("a console reported error %s", message.code.value)
    if refusal is not None:
        log.info("refused %s from a console: %s", message.TYPE, refusal.code.value)
        await _send(console.ws, refusal)


async def _serve(hub: Hub, console: Console) -> None:
    ws = console.ws
    async for msg in ws:
        if msg.type is WSMsgType.ERROR:
            log.info("a console's connection failed (%s)", type(ws.exception()).__name__)
            break
        try:
            message = protocol.parse(_frame_text(msg), sender="console")
        except BadMessage as exc:
            await _refuse(ws, exc, "a console")
            continue
        log.debug("a console sent %s", message.log_fields())
        try:
            await _handle(hub, console, message)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("failed to handle %s from a console", message.TYPE)
            text = f"{message.TYPE}: the hub failed ({type(exc).__name__}); try again"
            await _send(
                ws,
                protocol.Error(
                    id=new_id(), code=protocol.ErrorCode.INTERNAL, message=text, in_reply_to=None
                ),
            )


async def console_socket(request: web.Request) -> web.StreamResponse:
    """``GET /console``: a signed-in clinician's console, from snapshot to close."""
    if not same_origin(request):
        log.warning("refused a console connection from another origin")
        raise web.HTTPForbidden(text="The console connects only from the hub's own page.")
    session = await session_of(request)
    if session is None:
        raise web.HTTPUnauthorized(text="Sign in at /login first.")
    user, token = session
    hub = request.app[HUB_KEY]
    ws = web.WebSocketResponse(max_msg_size=WS_MAX_MSG_SIZE, heartbeat=30.0)
    await ws.prepare(request)
    console = Console(ws=ws, user=user, session_key=_session_key(token))
    hub.consoles.append(console)
    log.info("a console connected (%d open)", len(hub.consoles))
    watcher = asyncio.create_task(_watch_session(hub, console, token))
    try:
        await _deliver(ws, hub.snapshot(user.username))
        for alert in await hub.unacked_alerts():
            await _deliver(ws, alert_message(alert))
        await _serve(hub, console)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await hub.console_gone(console)
        await ws.close()
        log.info("a console disconnected (%d open)", len(hub.consoles))
    return ws


def add_routes(app: web.Application) -> None:
    """The clinician side's routes, on an app holding a :class:`Hub` (``create_app``)."""
    app[THROTTLE_KEY] = LoginThrottle()
    app.router.add_get("/", index)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/console", console_socket)
    app.router.add_get("/static/{name}", asset)

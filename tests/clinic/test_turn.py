"""TURN credentials: the REST-API format, its limits, and a real coturn that checks them.

The format tests pin the arithmetic; the coturn tests show the server accepts
what the hub mints and refuses the same request once expired or signed with
another secret (the twins), and that a call connects over the relay alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import math
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioice.ice
import pytest
from aioice import stun, turn
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
)

from clinic.turn import (
    DEFAULT_TTL,
    TurnConfig,
    TurnConfigError,
    TurnCredentials,
    turn_credentials,
)
from tests.turn_server import TurnServer, turn_server

__all__ = ["turn_server"]  # the fixture: exported so the import counts as used

SECRET = b"north-clinic-turn-secret"
NOW = 1_700_000_000.75
TIMEOUT_S = 10.0

# ------------------------------------------------------------------ format


def test_known_vector() -> None:
    # Computed independently: printf %s "1700003600:booth-7" |
    #   openssl dgst -sha1 -hmac north-clinic-turn-secret -binary | base64
    creds = turn_credentials(SECRET, "booth-7", NOW)
    assert creds.username == "1700003600:booth-7"
    assert creds.credential == "/mYf/qxeby/3botlb1Sn1zqddgQ="
    assert creds.ttl == DEFAULT_TTL == 3600


@pytest.mark.parametrize("user", ["booth-7", "session-3f9a0c", "0"])
@pytest.mark.parametrize("ttl", [60, 600, 86_400])
def test_credential_is_hmac_sha1_of_username(user: str, ttl: int) -> None:
    creds = turn_credentials(SECRET, user, NOW, ttl)
    expiry = math.floor(NOW) + ttl
    assert creds.username == f"{expiry}:{user}"
    expected = hmac.new(SECRET, f"{expiry}:{user}".encode(), hashlib.sha1).digest()
    assert base64.b64decode(creds.credential, validate=True) == expected


def test_expiry_is_now_plus_ttl_in_whole_seconds() -> None:
    creds = turn_credentials(SECRET, "booth-7", 1_700_000_000.999, 120)
    assert creds.expires_at == 1_700_000_120
    assert creds.ttl == 120
    assert turn_credentials(SECRET, "booth-7", 1_700_000_000, 120) == creds


def test_another_secret_gives_another_credential() -> None:
    one = turn_credentials(SECRET, "booth-7", NOW)
    other = turn_credentials(SECRET + b"!", "booth-7", NOW)
    assert one.username == other.username
    assert one.credential != other.credential


def test_secret_and_credential_stay_out_of_repr() -> None:
    config = TurnConfig(urls=("turn:127.0.0.1:3478",), secret=SECRET)
    creds = config.credentials_for("booth-7", NOW)
    assert SECRET.decode() not in repr(config)
    assert creds.credential not in repr(creds)
    assert "booth-7" in repr(creds)


def test_config_mints_credentials_carrying_its_urls() -> None:
    config = TurnConfig.from_dict(
        {
            "urls": ["turn:turn.example.org:3478?transport=udp"],
            "secret": SECRET.decode(),
            "ttl": 900,
        }
    )
    creds = config.credentials_for("session-3f9a0c", NOW)
    assert creds == turn_credentials(
        SECRET, "session-3f9a0c", NOW, 900, urls=["turn:turn.example.org:3478?transport=udp"]
    )
    assert creds.as_ice_server() == {
        "urls": ["turn:turn.example.org:3478?transport=udp"],
        "username": "1700000900:session-3f9a0c",
        "credential": creds.credential,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user": "Booth-7"}, "user: must be a booth or session id"),
        ({"user": "booth:7"}, "user: must be a booth or session id"),
        ({"user": "Jane Doe"}, "user: must be a booth or session id"),
        ({"user": ""}, "user: must be a booth or session id"),
        ({"user": "b" * 65}, "user: must be a booth or session id"),
        ({"secret": b"short"}, "secret: must be at least 16 bytes, not 5"),
        ({"secret": SECRET.decode()}, "secret: must be bytes, not str"),
        ({"ttl": 59}, "ttl: must be whole seconds from 60 to 86400, not 59"),
        ({"ttl": 86_401}, "ttl: must be whole seconds from 60 to 86400, not 86401"),
        ({"ttl": 600.0}, "ttl: must be whole seconds from 60 to 86400, not 600.0"),
        ({"ttl": True}, "ttl: must be whole seconds from 60 to 86400, not True"),
        ({"now": math.nan}, "now: must be a finite Unix time, not nan"),
        ({"now": -1.0}, "now: must be a Unix time after 1970, not -1.0"),
        ({"urls": ["stun:127.0.0.1:3478"]}, "urls[0]: must be a TURN URL"),
        ({"urls": "turn:127.0.0.1"}, "urls: must be a list of turn: URLs"),
    ],
)
def test_bad_request_is_refused(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"secret": SECRET, "user": "booth-7", "now": NOW} | kwargs
    with pytest.raises(TurnConfigError) as caught:
        turn_credentials(**args)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"urls": ["turn:h"], "secret": "x" * 16, "tll": 60}, "hub.turn.tll: unknown key"),
        ({"secret": "x" * 16}, "hub.turn.urls: missing"),
        ({"urls": ["turn:h"]}, "hub.turn.secret: missing"),
        ({"urls": [], "secret": "x" * 16}, "hub.turn.urls: must list at least one"),
        ({"urls": ["turn:h:0"], "secret": "x" * 16}, "hub.turn.urls[0]: must be a TURN URL"),
        ({"urls": ["turn:h:70000"], "secret": "x" * 16}, "hub.turn.urls[0]: must be a TURN URL"),
        ({"urls": ["turns:h?transport=udp"], "secret": "x" * 16}, "hub.turn.urls[0]: must be"),
        ({"urls": ["https://h"], "secret": "x" * 16}, "hub.turn.urls[0]: must be a TURN URL"),
        ({"urls": ["turn:h"], "secret": "x" * 15}, "hub.turn.secret: must be at least 16"),
        ({"urls": ["turn:h"], "secret": b"x" * 16}, "hub.turn.secret: must be a string"),
        ({"urls": ["turn:h"], "secret": "x" * 16, "ttl": "1h"}, "hub.turn.ttl: must be whole"),
    ],
)
def test_bad_config_names_its_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(TurnConfigError) as caught:
        TurnConfig.from_dict(data, path="hub.turn")
    assert str(caught.value).startswith(message)


def test_config_accepts_the_usual_urls() -> None:
    urls = (
        "turn:turn.example.org",
        "turn:turn.example.org:3478?transport=tcp",
        "turns:turn.example.org:5349?transport=tcp",
        "turn:[::1]:3478",
    )
    assert TurnConfig(urls=urls, secret=SECRET).urls == urls


# ------------------------------------------------------------ real coturn


class _Sink(asyncio.DatagramProtocol):
    """The far end of an allocation; tells when coturn confirmed its deletion."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


@contextlib.asynccontextmanager
async def _relay(server: TurnServer, creds: TurnCredentials) -> AsyncIterator[Any]:
    """One TURN allocation made with ``creds``: yields aioice's TURN client protocol."""
    transport, sink = await turn.create_turn_endpoint(
        _Sink, server_addr=server.address, username=creds.username, password=creds.credential
    )
    try:
        yield transport._TurnTransport__inner_protocol  # type: ignore[attr-defined]
    finally:
        transport.close()  # deletes the allocation (Refresh, lifetime 0)
        await asyncio.wait_for(sink.closed, TIMEOUT_S)


async def _allocate(server: TurnServer, creds: TurnCredentials) -> tuple[str, int]:
    async with _relay(server, creds) as client:
        address: tuple[str, int] = client.relayed_address
        return address


def _error_code(caught: pytest.ExceptionInfo[stun.TransactionFailed]) -> int:
    code: int = caught.value.response.attributes["ERROR-CODE"][0]
    return code


def test_fresh_credentials_get_an_allocation(turn_server: TurnServer) -> None:
    creds = turn_credentials(turn_server.secret, "booth-7", time.time())
    host, port = asyncio.run(_allocate(turn_server, creds))
    assert host == "127.0.0.1"
    assert port > 0


@pytest.mark.parametrize("how", ["expired", "wrong-secret", "tampered-expiry"])
def test_server_refuses_credentials_it_should(turn_server: TurnServer, how: str) -> None:
    """The twin of the test above: same request, one thing wrong, and coturn says 401."""
    ttl = DEFAULT_TTL
    now = time.time()
    if how == "expired":
        creds = turn_credentials(turn_server.secret, "booth-7", now - 2 * ttl, ttl)
    elif how == "wrong-secret":
        creds = turn_credentials(b"not-the-hub-secret-at-all", "booth-7", now, ttl)
    else:  # an expired pair with its expiry pushed forward by hand
        old = turn_credentials(turn_server.secret, "booth-7", now - 2 * ttl, ttl)
        creds = TurnCredentials(f"{int(now) + ttl}:booth-7", old.credential, ttl)
    with pytest.raises(stun.TransactionFailed) as caught:
        asyncio.run(_allocate(turn_server, creds))
    assert _error_code(caught) == 401


def test_allocation_outlives_its_credentials(turn_server: TurnServer) -> None:
    """coturn checks expiry when a relay is allocated, so a visit longer than ttl goes on."""

    async def scenario() -> None:
        # ttl 60 minted 58 s ago: the pair expires in one to two seconds.
        creds = turn_credentials(turn_server.secret, "booth-7", time.time() - 58, 60)
        async with _relay(turn_server, creds) as client:
            await asyncio.sleep(max(0.0, creds.expires_at - time.time()) + 1.1)
            refresh = stun.Message(
                message_method=stun.Method.REFRESH, message_class=stun.Class.REQUEST
            )
            refresh.attributes["LIFETIME"] = 600
            response, _ = await client.request_with_retry(refresh)
            assert response.attributes["LIFETIME"] == 600
            with pytest.raises(stun.TransactionFailed) as caught:  # but no new relay
                await _allocate(turn_server, creds)
            assert _error_code(caught) == 401

    asyncio.run(scenario())


def test_server_relays_to_loopback_only(turn_server: TurnServer) -> None:
    """The test server cannot be made to send anywhere but 127.0.0.1."""

    async def scenario() -> None:
        creds = turn_credentials(turn_server.secret, "booth-7", time.time())
        async with _relay(turn_server, creds) as client:
            await client.channel_bind(0x4000, ("127.0.0.1", 9))
            # Binding a channel sends nothing to the peer (a TEST-NET-2 address).
            with pytest.raises(stun.TransactionFailed) as caught:
                await client.channel_bind(0x4001, ("198.51.100.1", 9))
            assert _error_code(caught) == 403

    asyncio.run(scenario())


# ------------------------------------------------------- a call over the relay


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice skips 127.0.0.1 and would offer eth0; host candidates may only be loopback."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    yield


def _relay_only(creds: TurnCredentials) -> RTCConfiguration:
    # Explicit iceServers: the default would be Google's STUN server.
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(
                urls=list(creds.urls), username=creds.username, credential=creds.credential
            )
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )


def _candidate_types(sdp: str) -> set[str]:
    return {
        line.split(" typ ")[1].split()[0]
        for line in sdp.splitlines()
        if line.startswith("a=candidate:")
    }


class _Call:
    """A booth and a clinician in one process, each with its own per-call credentials."""

    def __init__(self, booth: TurnCredentials, clinician: TurnCredentials) -> None:
        self.booth = RTCPeerConnection(_relay_only(booth))
        self.clinician = RTCPeerConnection(_relay_only(clinician))
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.to_clinician: asyncio.Future[str] = loop.create_future()
        self.to_booth: asyncio.Future[str] = loop.create_future()
        self.channel = self.booth.createDataChannel("visit")
        self.channel.on("open", lambda: _settle(self.opened, None))
        self.channel.on("message", lambda message: _settle(self.to_booth, message))
        self.clinician.on("datachannel", self._on_datachannel)

    def _on_datachannel(self, channel: Any) -> None:
        def on_message(message: str) -> None:
            _settle(self.to_clinician, message)
            channel.send("hello booth")

        channel.on("message", on_message)

    async def negotiate(self) -> None:
        await self.booth.setLocalDescription(await self.booth.createOffer())
        await self.clinician.setRemoteDescription(self.booth.localDescription)
        await self.clinician.setLocalDescription(await self.clinician.createAnswer())
        await self.booth.setRemoteDescription(self.clinician.localDescription)

    async def close(self) -> None:
        await self.booth.close()
        await self.clinician.close()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


@pytest.mark.usefixtures("loopback_only")
def test_call_connects_through_the_relay_only(turn_server: TurnServer) -> None:
    async def scenario() -> None:
        now, urls = time.time(), [turn_server.url]
        call = _Call(
            turn_credentials(turn_server.secret, "booth-7", now, urls=urls),
            turn_credentials(turn_server.secret, "session-3f9a0c", now, urls=urls),
        )
        try:
            await call.negotiate()
            assert _candidate_types(call.booth.localDescription.sdp) == {"relay"}
            assert _candidate_types(call.clinician.localDescription.sdp) == {"relay"}

            await asyncio.wait_for(call.opened, TIMEOUT_S)
            call.channel.send("hello clinician")
            assert await asyncio.wait_for(call.to_clinician, TIMEOUT_S) == "hello clinician"
            assert await asyncio.wait_for(call.to_booth, TIMEOUT_S) == "hello booth"

            for pc in (call.booth, call.clinician):
                assert pc.sctp is not None
                ice = pc.sctp.transport.transport
                assert {c.type for c in ice.iceGatherer.getLocalCandidates()} == {"relay"}
                assert {c.type for c in ice.getRemoteCandidates()} == {"relay"}
                # aiortc has no public selected-pair API; aioice keeps it here.
                pair = ice._connection._nominated[1]
                assert (pair.local_candidate.type, pair.remote_candidate.type) == ("relay", "relay")
                assert pair.local_candidate.host == pair.remote_candidate.host == "127.0.0.1"
        finally:
            await call.close()

    asyncio.run(scenario())


@pytest.mark.usefixtures("loopback_only")
def test_call_fails_when_one_side_has_bad_credentials(turn_server: TurnServer) -> None:
    """The twin: relay-only with no relay means no call, not a quiet fallback to host."""

    async def scenario() -> None:
        now, urls = time.time(), [turn_server.url]
        call = _Call(
            turn_credentials(turn_server.secret, "booth-7", now, urls=urls),
            turn_credentials(b"not-the-hub-secret-at-all", "session-3f9a0c", now, urls=urls),
        )
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_state() -> None:
            if call.booth.connectionState == "failed":
                _settle(failed, None)

        call.booth.on("connectionstatechange", on_state)
        try:
            await call.negotiate()
            assert _candidate_types(call.clinician.localDescription.sdp) == set()
            await asyncio.wait_for(failed, TIMEOUT_S)
            assert not call.opened.done()
        finally:
            await call.close()

    asyncio.run(scenario())

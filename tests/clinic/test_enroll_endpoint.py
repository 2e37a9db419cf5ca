"""The hub's ``POST /enroll``: one booth per code, clear refusals, a size cap, the
signature check and the per-address guessing throttle (each with its twin)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from clinic.console import LoginThrottle
from clinic.enroll import MAX_BODY_BYTES, THROTTLE_KEY, signed_bytes
from clinic.store import Store
from tests.clinic.hubtest import T0, Db, Server, Tls, open_db, run


@pytest.fixture
def db(tmp_path: Path) -> Db:
    return open_db(tmp_path / "hub.sqlite3")


def request(code: str, booth_id: str = "new-booth", key: Ed25519PrivateKey | None = None) -> Any:
    key = key or Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public = base64.b64encode(raw).decode()
    return {
        "version": 1,
        "booth_id": booth_id,
        "name": "New booth",
        "site": "Eastside Library",
        "street_address": "5 East Rd",
        "room": "Room 1",
        "public_key": public,
        "code": code,
        "signature": base64.b64encode(key.sign(signed_bytes(booth_id, code, public))).decode(),
    }


async def post(server: Server, body: Any, **kw: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with server.session.post(
        f"{server.base}/enroll",
        data=data,
        headers={"Content-Type": "application/json"},
        ssl=server.tls.client(),
        **kw,
    ) as reply:
        return reply.status, await reply.json(content_type=None)


def code(store: Store, lifetime: float = 3600) -> str:
    return store.new_enrollment_code(T0, lifetime=lifetime)


def test_a_good_code_enrolls_once_and_then_is_used(db: Db, tls: Tls) -> None:
    good = code(db.store)
    key = Ed25519PrivateKey.generate()

    async def scenario(server: Server) -> None:
        status, body = await post(server, request(good, key=key))
        assert status == 201, body
        assert body["booth_id"] == "new-booth"
        assert db.store.verify_booth("new-booth", body["credential"]) is not None
        assert server.hub.booths["new-booth"].online is False  # consoles list it now
        status, body = await post(server, request(good, booth_id="another"))
        assert (status, body["error"]) == (403, "used_code")

    run(db, tls, scenario)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert db.store.booth_public_key("new-booth") == public
    booth = db.store.booth("new-booth")
    assert booth is not None and (booth.address, booth.room) == ("5 East Rd", "Room 1")


def test_wrong_and_expired_codes_are_named(db: Db, tls: Tls) -> None:
    expired = code(db.store, lifetime=1)  # T0 + 1; the hub's clock is T0 + 10

    async def scenario(server: Server) -> None:
        status, body = await post(server, request("AAAA-BBBB-CCCC"))
        assert (status, body["error"]) == (403, "wrong_code")
        status, body = await post(server, request(expired))
        assert (status, body["error"]) == (403, "expired_code")
        assert "expired" in body["message"]

    run(db, tls, scenario, clock=lambda: T0 + 10)
    assert db.store.booth("new-booth") is None


def test_a_taken_booth_id_is_named_only_for_a_good_code_and_keeps_the_code(
    db: Db, tls: Tls
) -> None:
    good = code(db.store)

    async def scenario(server: Server) -> None:
        status, body = await post(server, request("AAAA-BBBB-CCCC", booth_id="booth-1"))
        assert (status, body["error"]) == (403, "wrong_code")  # says nothing about booth-1
        status, body = await post(server, request(good, booth_id="booth-1"))
        assert (status, body["error"]) == (409, "booth_id_taken")
        assert 'there is already a booth "booth-1"' in body["message"]
        status, body = await post(server, request(good, booth_id="booth-3"))
        assert status == 201

    run(db, tls, scenario)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        {"version": 2},
        {"version": 1, "booth_id": "x"},
        "bad id",
        "short key",
    ],
    ids=["not-json", "not-object", "version", "missing", "bad-id", "short-key"],
)
def test_malformed_requests_get_a_bad_request_naming_the_field(db: Db, tls: Tls, body: Any) -> None:
    good = code(db.store)
    if body == "bad id":
        body = request(good, booth_id="Bad Id!")
    elif body == "short key":
        body = request(good)
        body["public_key"] = base64.b64encode(b"x" * 31).decode()

    async def scenario(server: Server) -> None:
        status, answer = await post(server, body)
        assert (status, answer["error"]) == (400, "bad_request"), answer
        assert answer["message"]

    run(db, tls, scenario)
    assert db.store.redeem_enrollment_code(good, T0)  # none of them spent the code


def test_a_body_over_the_cap_is_refused(db: Db, tls: Tls) -> None:
    async def scenario(server: Server) -> None:
        status, answer = await post(server, b"{" + b" " * MAX_BODY_BYTES + b"}")
        assert (status, answer["error"]) == (413, "too_big")

    run(db, tls, scenario)


@pytest.mark.parametrize("check", [True, False], ids=["checked", "check-off"])
def test_a_signature_by_another_key_is_refused(
    db: Db, tls: Tls, monkeypatch: pytest.MonkeyPatch, check: bool
) -> None:
    """The booth must hold the key it registers; with the check off, anyone's key is taken."""
    good = code(db.store)
    body = request(good)
    body["signature"] = request(good)["signature"]  # signed by a different key
    if not check:
        monkeypatch.setattr(
            Ed25519PublicKey,
            "from_public_bytes",
            staticmethod(lambda raw: type("Any", (), {"verify": lambda *a: None})()),
        )

    async def scenario(server: Server) -> None:
        status, answer = await post(server, body)
        if check:
            assert (status, answer["error"]) == (400, "bad_signature")
        else:
            assert status == 201

    run(db, tls, scenario)


class _NoThrottle(LoginThrottle):
    def delay(self, name: str, now: float) -> float:
        return 0.0


@pytest.mark.parametrize("throttled", [True, False], ids=["throttled", "throttle-off"])
def test_guessing_codes_is_slowed_per_address(db: Db, tls: Tls, throttled: bool) -> None:
    """Three wrong codes, then the fourth waits (429 with Retry-After), while another
    address is not held up. Twin: without the throttle every guess is checked."""
    good = code(db.store)

    async def scenario(server: Server) -> None:
        if not throttled:
            server.app[THROTTLE_KEY].__class__ = _NoThrottle
        for _ in range(3):
            status, answer = await post(server, request("AAAA-BBBB-CCCC"))
            assert answer["error"] == "wrong_code"
        status, answer = await post(server, request(good))
        if not throttled:
            assert status == 201
            return
        assert (status, answer["error"]) == (429, "rate_limited")
        assert answer["retry_after"] >= 1
        other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with (
            aiohttp.ClientSession(connector=other) as session,
            session.post(
                f"{server.base}/enroll", json=request(good), ssl=server.tls.client()
            ) as reply,
        ):
            assert reply.status == 201, await reply.text()

    run(db, tls, scenario)

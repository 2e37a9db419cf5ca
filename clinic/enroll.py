"""``POST /enroll``: a booth registers itself with a one-time enrollment code.

A hub admin prints a code with ``clinic-hub enroll-code``; the technician
types it into ``kiosk-provision enroll`` on the booth, which sends it here
with the booth's id, where it stands and its own Ed25519 public key, signed
with the matching private key (so the hub knows the booth holds the key it
registers). The hub spends the code, registers the booth and answers with the
booth's credential, the only time it is ever sent. ``docs/protocol.md``
("Enrollment") is the wire format.

Guessing is slowed per source address exactly as wrong passwords are per
username (:class:`clinic.console.LoginThrottle`): every wrong, expired or used
code counts, and one check runs at a time per address. A booth id already
taken is reported only for a good code, so without one nothing is learned
about which booths exist; such a refusal leaves the code unspent.

Logs name the booth id and the refusal's reason, never the code or the
credential.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Any, Final

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from clinic.console import LoginThrottle
from clinic.server import HUB_KEY, BoothStatus
from clinic.store import (
    ED25519_KEY_BYTES,
    DuplicateError,
    EnrollmentRefusedError,
    InvalidValueError,
)

log = logging.getLogger(__name__)

PATH: Final = "/enroll"
VERSION: Final = 1
MAX_BODY_BYTES: Final = 4096
"""An enrollment request is a few hundred bytes; a bigger one is refused unread."""
SIGNATURE_BYTES: Final = 64
SIGNED_CONTEXT: Final = b"telehealth-kiosk enrollment v1\n"
"""Prefixed to what the booth signs, so the signature can mean nothing else."""
FIELDS: Final = (
    "booth_id",
    "name",
    "site",
    "street_address",
    "room",
    "public_key",
    "code",
    "signature",
)

THROTTLE_KEY: Final = web.AppKey("enroll_throttle", LoginThrottle)


def signed_bytes(booth_id: str, code: str, public_key_b64: str) -> bytes:
    """What the booth signs: the id and code it sends, bound to the key it registers."""
    return SIGNED_CONTEXT + "\n".join((booth_id, code, public_key_b64)).encode("utf-8")


def _refusal(status: int, error: str, message: str, **extra: Any) -> web.Response:
    body = {"error": error, "message": message, **extra}
    response = web.json_response(body, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


class _BadRequestError(Exception):
    """The request is not a well-formed enrollment; the message says which field."""


def _b64(fields: dict[str, str], name: str, size: int) -> bytes:
    try:
        raw = base64.b64decode(fields[name], validate=True)
    except (binascii.Error, ValueError):
        raise _BadRequestError(f"{name}: must be base64") from None
    if len(raw) != size:
        raise _BadRequestError(f"{name}: must be {size} bytes in base64, not {len(raw)}")
    return raw


def _parse(body: bytes) -> dict[str, str]:
    """The request's fields, each text; unknown fields are ignored for later versions."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _BadRequestError("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise _BadRequestError("the body must be a JSON object")
    if data.get("version") != VERSION:
        raise _BadRequestError(f"version: must be {VERSION}")
    fields: dict[str, str] = {}
    for name in FIELDS:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise _BadRequestError(f"{name}: required, as text")
        fields[name] = value
    return fields


async def enroll(request: web.Request) -> web.StreamResponse:
    """``POST /enroll``: spend a code, register the booth, return its credential."""
    hub = request.app[HUB_KEY]
    throttle = request.app[THROTTLE_KEY]
    source = request.remote or "unknown"
    now = hub.clock()
    delay = throttle.delay(source, now)
    if delay > 0:
        wait = max(1, round(delay))
        response = _refusal(
            429,
            "rate_limited",
            f"too many wrong enrollment codes from this address; try again in {wait} s",
            retry_after=wait,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    if source in throttle.checking:
        return _refusal(
            429, "rate_limited", "an enrollment from this address is being checked; try again"
        )
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _refusal(413, "too_big", f"an enrollment request is at most {MAX_BODY_BYTES} bytes")
    throttle.checking.add(source)
    try:
        return await _enroll(request, source)
    finally:
        throttle.checking.discard(source)


async def _enroll(request: web.Request, source: str) -> web.Response:
    hub = request.app[HUB_KEY]
    throttle = request.app[THROTTLE_KEY]
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        body = b"x" * (MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return _refusal(413, "too_big", f"an enrollment request is at most {MAX_BODY_BYTES} bytes")
    try:
        fields = _parse(body)
        public_key = _b64(fields, "public_key", ED25519_KEY_BYTES)
        signature = _b64(fields, "signature", SIGNATURE_BYTES)
    except _BadRequestError as exc:
        return _refusal(400, "bad_request", str(exc))
    signed = signed_bytes(fields["booth_id"], fields["code"], fields["public_key"])
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, signed)
    except (InvalidSignature, ValueError):
        log.info("refused an enrollment: bad signature")
        return _refusal(
            400, "bad_signature", "signature: does not match public_key over the request"
        )
    try:
        token = await asyncio.to_thread(
            hub.store.enroll_booth,
            fields["code"],
            fields["booth_id"],
            name=fields["name"],
            site=fields["site"],
            address=fields["street_address"],
            room=fields["room"],
            public_key=public_key,
            now=hub.clock(),
        )
    except InvalidValueError as exc:
        return _refusal(400, "bad_request", str(exc))
    except EnrollmentRefusedError as exc:
        throttle.note(source, False, hub.clock())
        log.info("refused an enrollment: %s", exc.reason)
        return _refusal(403, exc.reason, str(exc))
    except DuplicateError as exc:
        log.info("refused an enrollment: booth id %s is taken", fields["booth_id"])
        return _refusal(409, "booth_id_taken", str(exc))
    booth_id = fields["booth_id"]
    booth = await asyncio.to_thread(hub.store.booth, booth_id)
    if booth is not None:
        hub.booths[booth_id] = BoothStatus(booth, online=False)
        await hub.publish()
    log.warning("booth %s enrolled", booth_id)
    response = web.json_response({"booth_id": booth_id, "credential": token}, status=201)
    response.headers["Cache-Control"] = "no-store"
    return response


def add_routes(app: web.Application) -> None:
    """The enrollment route, on an app holding a :class:`~clinic.server.Hub` (``create_app``)."""
    app[THROTTLE_KEY] = LoginThrottle()
    app.router.add_post(PATH, enroll)

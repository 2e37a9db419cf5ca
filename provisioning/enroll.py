"""``kiosk-provision enroll``: register this booth with its clinic hub, once.

1. The booth makes its own Ed25519 key pair; the private key stays in
   :attr:`Layout.identity_key`, readable by the booth's user only (0600). A
   key left by an enrollment that failed is used again.
2. It sends ``POST /enroll`` (``docs/protocol.md``, "Enrollment") to the hub
   at ``[hub] url``, over HTTPS with the hub's certificate **pinned**: the
   SHA-256 of the certificate must equal ``[hub] certificate_sha256``, as for
   the booth's own link (:mod:`kiosk.call.hub_link`); a certificate that does
   not match is dropped before the code is sent. The request carries the
   booth's id and where it stands (staff need it in an emergency), its public
   key, the one-time code ``clinic-hub enroll-code`` printed, and a signature
   by the private key.
3. The hub answers with the booth's credential, which is kept in
   :attr:`Layout.credential` (0600), and ``[hub] credential_file`` is set in
   the booth file to point at it.

Every refusal says what to do: a wrong, expired or used code, a booth id the
hub already has (``clinic-hub remove-booth`` frees it), a hub that cannot be
reached, a certificate that does not match (both fingerprints shown).

Without ``--code``, a code a technician's USB bundle left on the booth
(:func:`provisioning.bundle.enrollment_code_path`, 0600) is used, and deleted
once it is spent: enrolled, or refused as wrong, expired or used. A refusal
that leaves the code good (the booth id is taken, the hub is unreachable)
keeps it for the next try.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import re
import ssl
import sys
import tomllib
from pathlib import Path
from typing import Any, Final
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinic.enroll import PATH, VERSION, signed_bytes
from clinic.store import ENROLLMENT_ALPHABET, ENROLLMENT_CHARS
from kiosk.commandline import EXIT_OK, EXIT_PROBLEMS, Command, err
from kiosk.config import BoothConfig, load, problem_report
from kiosk.errors import ConfigError
from provisioning.bundle import enrollment_code_path
from provisioning.initcmd import (
    CONFIG_MODE,
    PRIVATE_MODE,
    PROG,
    ProvisionError,
    add_root,
    dump_toml,
    write_atomic,
)
from provisioning.layout import Layout

TIMEOUT: Final = 20.0
"""Seconds for the whole exchange; a hub on a slow rural link answers well within it."""
_CODE_CHARS: Final = frozenset(ENROLLMENT_ALPHABET + "ILO")


class EnrollError(ProvisionError):
    """Enrollment did not happen; the message says why and what to do.

    ``reason`` is the hub's refusal code when the hub refused (``wrong_code``,
    ``expired_code``, ``used_code``, ``booth_id_taken``...), else None.
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


SPENT_CODE: Final = frozenset({"wrong_code", "expired_code", "used_code", "malformed_code"})
"""Refusals after which a code can never enroll a booth, so a saved copy is deleted."""


def enroll_url(hub_url: str) -> str:
    """``wss://host/booth`` -> ``https://host/enroll`` (a path prefix before /booth is kept)."""
    parts = urlsplit(hub_url)
    base = urlunsplit(("https", parts.netloc, parts.path or "/", "", ""))
    return urljoin(base, PATH.lstrip("/"))


def code_problem(code: str) -> str | None:
    """Why ``code`` cannot be an enrollment code, before asking the hub; None when it may be."""
    cleaned = code.upper().replace("-", "").replace(" ", "")
    if len(cleaned) == ENROLLMENT_CHARS and set(cleaned) <= _CODE_CHARS:
        return None
    return (
        f"an enrollment code is {ENROLLMENT_CHARS} letters and digits such as "
        '"7KQ4-M2XD-9HPT", as `clinic-hub enroll-code` printed it; check what was typed'
    )


# ------------------------------------------------------------------- the key


def load_or_make_key(path: Path) -> Ed25519PrivateKey:
    """The booth's private key: the one in ``path``, or a new one written there (0600)."""
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise EnrollError(
                f"{path} does not hold this booth's key ({exc}); "
                f"`{PROG} reset` wipes it so a new one is made"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise EnrollError(f"{path} holds a key that is not Ed25519; `{PROG} reset` wipes it")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(path, pem, PRIVATE_MODE)
    return key


def public_key_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def enrollment_request(config: BoothConfig, code: str, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The JSON the hub's ``/enroll`` takes, signed with the booth's key."""
    public = public_key_b64(key)
    signature = key.sign(signed_bytes(config.booth.id, code, public))
    return {
        "version": VERSION,
        "booth_id": config.booth.id,
        "name": config.booth.name,
        "site": config.site.name,
        "street_address": config.site.street_address,
        "room": config.site.room,
        "public_key": public,
        "code": code,
        "signature": base64.b64encode(signature).decode("ascii"),
    }


# ------------------------------------------------------------------ the hub


async def certificate_sha256_at(url: str, timeout: float = TIMEOUT) -> str:
    """The SHA-256 of the certificate the server at ``url`` shows, checking nothing else.

    Asked before anything is sent, so a mismatch is reported with both
    fingerprints and the connection is closed cleanly; the request itself is
    pinned again (:class:`aiohttp.Fingerprint`) in case the server changed.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 443
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the pin is the check, whatever CA signed it
    async with asyncio.timeout(timeout):
        _reader, writer = await asyncio.open_connection(host, port, ssl=context)
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    return hashlib.sha256(der).hexdigest()


def mismatch_text(url: str, got: str, expected: str) -> str:
    return (
        f"the hub at {url} showed a certificate whose SHA-256 is {got}, but "
        f"[hub] certificate_sha256 expects {expected}; nothing was sent. If the "
        "hub's certificate was renewed, set the new fingerprint (`clinic-hub serve` prints "
        f"it) with `{PROG} init`; otherwise this is not your clinic's hub"
    )


def _refusal_text(status: int, body: Any, config: BoothConfig, url: str) -> str:
    """What a refusal from the hub means to the technician, and the fix."""
    error = body.get("error") if isinstance(body, dict) else None
    detail = body.get("message") if isinstance(body, dict) else None
    new_code = "ask the hub's admin for a new one (`clinic-hub enroll-code`)"
    if error == "wrong_code":
        return (
            "the hub does not know that enrollment code: check it was typed as "
            f"`clinic-hub enroll-code` printed it, or {new_code}"
        )
    if error == "expired_code":
        return f"that enrollment code has expired (a code lasts 24 hours); {new_code}"
    if error == "used_code":
        return f"that enrollment code was used already (each code enrolls one booth); {new_code}"
    if error == "booth_id_taken":
        return (
            f'the hub already has a booth "{config.booth.id}": give this booth another id '
            f"([booth] id, with `{PROG} init`), or, if this is that same booth set up again, "
            "ask the hub's admin to remove the old registration (`clinic-hub remove-booth "
            f"{config.booth.id}`); the code was not used up, so try again with it"
        )
    if error == "rate_limited":
        wait = body.get("retry_after", "a few") if isinstance(body, dict) else "a few"
        return f"the hub is refusing codes from this network for now; wait {wait} seconds"
    if isinstance(error, str):
        return f"the hub refused the enrollment ({error}: {detail})"
    return (
        f"the hub at {url} answered HTTP {status} without an enrollment reply: is [hub] url "
        "the clinic hub's booth address, and is the hub up to date?"
    )


async def register(
    config: BoothConfig,
    code: str,
    key: Ed25519PrivateKey,
    *,
    verify_pin: bool = True,
    timeout: float = TIMEOUT,
) -> str:
    """Enroll with the hub and return the booth's credential, or raise :class:`EnrollError`.

    ``verify_pin=False`` accepts any certificate: only for the test showing
    that the pin is what stops a hub that is not ours.
    """
    url = enroll_url(config.hub.url)
    pin = aiohttp.Fingerprint(bytes.fromhex(config.hub.certificate_sha256))
    checked: aiohttp.Fingerprint | bool = pin if verify_pin else False
    body = enrollment_request(config, code, key)
    try:
        if verify_pin:
            got = await certificate_sha256_at(url, timeout)
            if got != config.hub.certificate_sha256:
                raise EnrollError(mismatch_text(url, got, config.hub.certificate_sha256))
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, json=body, ssl=checked, allow_redirects=False) as reply,
        ):
            status = reply.status
            text = await reply.text(errors="replace")
    except aiohttp.ServerFingerprintMismatch as exc:
        raise EnrollError(mismatch_text(url, exc.got.hex(), exc.expected.hex())) from None
    except (TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError) as exc:
        reason = str(exc) or type(exc).__name__
        raise EnrollError(
            f"cannot reach the hub at {url} ({reason}): check the booth's network "
            f"(`{PROG} network`) and [hub] url"
        ) from None
    try:
        answer = json.loads(text)
    except json.JSONDecodeError:
        answer = None
    if status == 201 and isinstance(answer, dict) and isinstance(answer.get("credential"), str):
        credential: str = answer["credential"]
        return credential
    refusal = answer.get("error") if isinstance(answer, dict) else None
    raise EnrollError(
        _refusal_text(status, answer, config, url), refusal if isinstance(refusal, str) else None
    )


# --------------------------------------------------------------- the files


_CREDENTIAL_LINE = re.compile(r"\s*credential_file\s*=")
_TABLE_LINE = re.compile(r"\s*\[")


def with_credential_file(document: str, credential: Path) -> str:
    """The booth file's text with ``[hub] credential_file`` set, comments and all kept.

    The line is replaced, or added under ``[hub]``; a file written another way
    (a dotted or inline ``hub``) is written out anew from its data instead.
    """
    wanted = f"credential_file = {json.dumps(str(credential))}"
    lines = document.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "[hub]"), None)
    if start is not None:
        end = next(
            (i for i in range(start + 1, len(lines)) if _TABLE_LINE.match(lines[i])), len(lines)
        )
        at = next((i for i in range(start + 1, end) if _CREDENTIAL_LINE.match(lines[i])), None)
        if at is None:
            lines.insert(start + 1, wanted)
        else:
            lines[at] = wanted
        edited = "\n".join(lines) + "\n"
        try:
            hub = tomllib.loads(edited).get("hub", {})
        except tomllib.TOMLDecodeError:
            hub = {}
        if isinstance(hub, dict) and hub.get("credential_file") == str(credential):
            return edited
    data = tomllib.loads(document)
    data.setdefault("hub", {})["credential_file"] = str(credential)
    return dump_toml(data)


def _read_code(code: str | None) -> str:
    if code is None:
        sys.stderr.write("Enrollment code (from `clinic-hub enroll-code`): ")
        sys.stderr.flush()
        code = sys.stdin.readline()
        if not code:
            raise EnrollError("no enrollment code given")
    code = code.strip()
    problem = code_problem(code)
    if problem is not None:
        raise EnrollError(problem, "malformed_code")
    return code


def bundle_code(layout: Layout) -> str | None:
    """The enrollment code a technician's USB bundle left on the booth, or None."""
    path = enrollment_code_path(layout)
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise EnrollError(
            f"cannot read the enrollment code the technician bundle left in {path} ({why}); "
            f"run as root (sudo), or give the code with --code"
        ) from None


def _forget_bundle_code(layout: Layout) -> None:
    """Delete the bundle's copy of a code that is used up or can never work."""
    path = enrollment_code_path(layout)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        err(f"{PROG} enroll: could not delete {path} ({exc.strerror or exc}); delete it by hand")
    else:
        err(f"Deleted {path}: that code cannot be used again.")


def enroll(layout: Layout, code: str, *, verify_pin: bool = True) -> str:
    """Enroll the booth laid out in ``layout``; returns its booth id."""
    try:
        config = load(layout.config)
    except ConfigError as exc:
        raise ConfigError(
            [*exc.problems, f"(write the configuration first: `{PROG} init`)"], exc.source
        ) from None
    if layout.credential.exists():
        raise EnrollError(
            f"this booth is enrolled already (its credential is {layout.credential}); "
            f"to enroll it again, `{PROG} reset` first"
        )
    key = load_or_make_key(layout.identity_key)
    credential = asyncio.run(register(config, code, key, verify_pin=verify_pin))
    write_atomic(layout.credential, credential.encode("ascii") + b"\n", PRIVATE_MODE)
    try:
        document = layout.config.read_text(encoding="utf-8-sig")
        edited = with_credential_file(document, layout.credential)
        write_atomic(layout.config, edited.encode("utf-8"), CONFIG_MODE)
    except (OSError, tomllib.TOMLDecodeError, ProvisionError) as exc:
        raise EnrollError(
            f"enrolled, and the credential is in {layout.credential}, but {layout.config} "
            f'could not be updated ({exc}): add credential_file = "{layout.credential}" '
            "under [hub] by hand"
        ) from None
    return config.booth.id


def _enroll_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--code",
        metavar="CODE",
        help="the one-time code `clinic-hub enroll-code` printed (default: the one a "
        "technician bundle left on the booth, else asked for)",
    )
    add_root(parser)


def _enroll(args: argparse.Namespace) -> int:
    layout = Layout(args.root)
    from_bundle = False
    try:
        given: str | None = args.code
        if given is None:
            given = bundle_code(layout)
            from_bundle = given is not None
            if from_bundle:
                where = enrollment_code_path(layout)
                err(f"Using the enrollment code from the technician bundle ({where}).")
        code = _read_code(given)
        booth_id = enroll(layout, code)
    except ConfigError as exc:
        for line in problem_report(exc):
            err(line)
        err(f"{PROG} enroll: not enrolled")
        return EXIT_PROBLEMS
    except EnrollError as exc:
        err(f"{PROG} enroll: {exc}")
        if from_bundle and exc.reason in SPENT_CODE:
            _forget_bundle_code(layout)
        return EXIT_PROBLEMS
    except ProvisionError as exc:
        err(f"{PROG} enroll: {exc}")
        return EXIT_PROBLEMS
    if from_bundle:
        _forget_bundle_code(layout)
    print(
        f"Enrolled booth {booth_id}; its credential is in {layout.credential} and its key in "
        f"{layout.identity_key}. Next: `{PROG} selftest`."
    )
    return EXIT_OK


COMMAND: Final = Command(
    "enroll",
    "register this booth with its clinic hub using a one-time code from `clinic-hub enroll-code`",
    _enroll_args,
    _enroll,
)

"""TURN credentials minted per call, so no booth ever holds a TURN password.

The hub and coturn share one secret (coturn's ``use-auth-secret`` /
``static-auth-secret``, the "TURN REST API" scheme). For each call the hub
hands the booth and the clinician a username and credential that coturn can
check on its own, without a user database, and that stop working at a time
written into the username::

    username   = f"{expiry}:{user}"            expiry = int(now) + ttl
    credential = base64(HMAC-SHA1(secret, username))

A stolen pair can open relays only until ``expiry``; the secret itself never
leaves the hub. coturn (4.6.1, checked in the tests) looks at the expiry when
a relay is allocated, and an allocation made in time keeps refreshing past it:
``ttl`` bounds how late a call may start or gather again, not how long it lasts.
``user`` only tells coturn's log whose allocation it is, so it is a booth id
or a clinician session id, never anything about a resident.

Pure functions on plain values: the caller passes ``now``, which keeps expiry
testable without patching the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TTL = 3600
# From a minute (clock skew, a slow answer) to the day the TURN REST API draft
# recommends; the default covers a visit's wait plus its ICE restarts.
TTL_RANGE = (60, 86_400)
# HMAC-SHA1 of a public username: a short secret could be brute-forced offline
# from one credential pair seen on a booth.
MIN_SECRET_BYTES = 16
USER_MAX = 64
_USER = re.compile(rf"[a-z0-9-]{{1,{USER_MAX}}}")
# RFC 7065 TURN URIs, restricted to what aiortc can use: UDP or TCP, turns over TCP.
_TURN_URL = re.compile(
    r"(?P<scheme>turns?):(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?"
)


class TurnConfigError(ValueError):
    """A TURN setting or a credential request is invalid; the message names which."""


@dataclass(frozen=True)
class TurnCredentials:
    """What one party gets for one call: an ``RTCIceServer`` plus its lifetime."""

    username: str
    credential: str = field(repr=False)
    ttl: int
    urls: tuple[str, ...] = ()

    @property
    def expires_at(self) -> int:
        """Unix time after which coturn refuses these credentials."""
        return int(self.username.partition(":")[0])

    def as_ice_server(self) -> dict[str, Any]:
        """The JSON shape of a WebRTC ``RTCIceServer`` for the signaling message."""
        return {"urls": list(self.urls), "username": self.username, "credential": self.credential}


@dataclass(frozen=True)
class TurnConfig:
    """The hub's TURN settings: where coturn is and the secret it shares with us."""

    urls: tuple[str, ...]
    secret: bytes = field(repr=False)
    ttl: int = DEFAULT_TTL

    def __post_init__(self) -> None:
        object.__setattr__(self, "urls", _checked_urls(self.urls, "turn.urls"))
        _check_secret(self.secret, "turn.secret")
        _check_ttl(self.ttl, "turn.ttl")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "turn") -> TurnConfig:
        """Build from parsed TOML/JSON; unknown keys are errors so typos never pass."""
        unknown = sorted(set(data) - {"urls", "secret", "ttl"})
        if unknown:
            raise TurnConfigError(f"{path}.{unknown[0]}: unknown key (known: secret, ttl, urls)")
        for key in ("urls", "secret"):
            if key not in data:
                raise TurnConfigError(f"{path}.{key}: missing")
        secret = data["secret"]
        if not isinstance(secret, str):
            raise TurnConfigError(f"{path}.secret: must be a string, not {type(secret).__name__}")
        ttl = data.get("ttl", DEFAULT_TTL)
        urls = _checked_urls(data["urls"], f"{path}.urls")
        # coturn uses the static-auth-secret string's bytes as the HMAC key.
        _check_secret(secret.encode(), f"{path}.secret")
        _check_ttl(ttl, f"{path}.ttl")
        return cls(urls=urls, secret=secret.encode(), ttl=ttl)

    def credentials_for(self, user: str, now: float) -> TurnCredentials:
        """Fresh credentials for one call, carrying this server's URLs."""
        return turn_credentials(self.secret, user, now, self.ttl, urls=self.urls)


def turn_credentials(
    secret: bytes, user: str, now: float, ttl: int = DEFAULT_TTL, *, urls: Sequence[str] = ()
) -> TurnCredentials:
    """Mint coturn REST-API credentials for ``user`` valid from ``now`` for ``ttl`` seconds."""
    _check_secret(secret, "secret")
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise TurnConfigError(
            f"user: must be a booth or session id of 1-{USER_MAX} characters a-z, 0-9 "
            f"and '-', not {user!r}"
        )
    if isinstance(now, bool) or not isinstance(now, int | float) or not math.isfinite(now):
        raise TurnConfigError(f"now: must be a finite Unix time, not {now!r}")
    if now < 0:
        raise TurnConfigError(f"now: must be a Unix time after 1970, not {now!r}")
    _check_ttl(ttl, "ttl")
    checked_urls = _checked_urls(urls, "urls") if urls else ()
    username = f"{int(now) + ttl}:{user}"
    digest = hmac.new(secret, username.encode("ascii"), hashlib.sha1).digest()
    return TurnCredentials(
        username=username,
        credential=base64.b64encode(digest).decode("ascii"),
        ttl=ttl,
        urls=checked_urls,
    )


def _check_secret(secret: object, where: str) -> None:
    if not isinstance(secret, bytes):
        raise TurnConfigError(f"{where}: must be bytes, not {type(secret).__name__}")
    if len(secret) < MIN_SECRET_BYTES:
        raise TurnConfigError(
            f"{where}: must be at least {MIN_SECRET_BYTES} bytes, not {len(secret)}"
        )


def _check_ttl(ttl: object, where: str) -> None:
    low, high = TTL_RANGE
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not low <= ttl <= high:
        raise TurnConfigError(f"{where}: must be whole seconds from {low} to {high}, not {ttl!r}")


def _checked_urls(urls: object, where: str) -> tuple[str, ...]:
    if isinstance(urls, str | bytes) or not isinstance(urls, Sequence):
        raise TurnConfigError(f"{where}: must be a list of turn: URLs, not {urls!r}")
    if not urls:
        raise TurnConfigError(f"{where}: must list at least one turn: URL, not none")
    for index, url in enumerate(urls):
        _check_url(url, f"{where}[{index}]")
    return tuple(urls)


def _check_url(url: object, where: str) -> None:
    match = _TURN_URL.fullmatch(url) if isinstance(url, str) else None
    problem = (
        f'{where}: must be a TURN URL such as "turn:turn.example.org:3478?transport=udp", '
        f"not {url!r}"
    )
    if match is None:
        raise TurnConfigError(problem)
    port = match["port"]
    if port is not None and not 1 <= int(port) <= 65_535:
        raise TurnConfigError(problem + " (the port must be 1-65535)")
    if match["scheme"] == "turns" and match["transport"] == "udp":
        raise TurnConfigError(problem + " (turns: runs over TCP only)")

"""The hub the hub-link tests talk to: its certificates and its database, per test.

Fixtures (``tls``, ``db``) are offered to every call test through conftest.py.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from clinic.server import dev_certificate
from clinic.store import ScryptParams, Store

FAST = ScryptParams(n=16, r=1, p=1)
T0 = 1_750_000_000.0
CODE = "482913"


@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path
    fingerprint: str

    def server(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@dataclass(frozen=True)
class Tls:
    hub: Cert
    other: Cert  # another self-signed certificate: what an impostor would serve


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return Tls(
        Cert(*dev_certificate(tmp_path_factory.mktemp("tls"))),
        Cert(*dev_certificate(tmp_path_factory.mktemp("other-tls"))),
    )


@dataclass(frozen=True)
class Db:
    store: Store
    token: str


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    store = Store(tmp_path / "hub.sqlite3", password_params=FAST)
    with store:
        token = store.add_booth(
            "booth-1",
            name="Riverside booth",
            site="Riverside Library",
            address="1 Main St",
            room="2",
        )
        store.add_clinician("a.rivera", "correct horse battery staple", "Dr. Ana Rivera")
        store.add_appointment(CODE, "a.rivera", T0)
        yield Db(store, token)

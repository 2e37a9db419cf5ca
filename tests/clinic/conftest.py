"""Fixtures most hub tests share: a dev certificate per module, a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clinic.hubtest import Db, Tls, make_tls, open_db


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    d = open_db(tmp_path / "hub.sqlite3")
    with d.store:
        yield d

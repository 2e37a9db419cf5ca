"""One signed repository with 1.0.0 published and one booth running it, made once per
module (pip runs once); each test gets its own copy, server and frozen clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning.layout import Layout
from tests.provisioning.update.helpers import (
    Clock,
    Publisher,
    copy_booth,
    install_booth,
)


@dataclass
class World:
    publisher: Publisher
    layout: Layout
    clock: Clock


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Publisher, Path]]:
    base = tmp_path_factory.mktemp("template")
    publisher = Publisher(base / "pub", Clock())
    bundle = publisher.publish("1.0.0")
    install_booth(base / "booth", bundle)
    publisher.server.stop()
    yield publisher, base / "booth"


@pytest.fixture
def world(template: tuple[Publisher, Path], tmp_path: Path) -> Iterator[World]:
    publisher, booth = template
    clock = Clock()
    copy = publisher.copy(tmp_path / "pub", clock)
    layout = copy_booth(booth, tmp_path / "booth")
    try:
        yield World(copy, layout, clock)
    finally:
        copy.server.stop()

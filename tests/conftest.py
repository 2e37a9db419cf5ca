"""Test-wide setup: headless Kivy, mock GPIO pins, opt-in hardware-in-the-loop tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("KIVY_NO_ARGS", "1")
os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
os.environ.setdefault("KIVY_HOME", str(_ROOT / ".kivy"))
os.environ.setdefault("GPIOZERO_PIN_FACTORY", "mock")
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hil",
        action="store_true",
        default=False,
        help="run hardware-in-the-loop tests (only on a real booth: a Raspberry Pi)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--hil"):
        return
    skip = pytest.mark.skip(reason="needs a real booth: run `pytest --hil` on the Raspberry Pi")
    for item in items:
        if "hil" in item.keywords:
            item.add_marker(skip)

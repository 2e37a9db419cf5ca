"""K1: no key or gesture leaves the booth's app; Kivy configured in code only."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kiosk.ui import lockdown
from tests.kiosk.ui.harness import Pilot, run_booth

ESC, F1, F4, F11, F12, TAB, Q, W = 27, 282, 285, 292, 293, 9, ord("q"), ord("w")
KEYS = [
    ("Escape", ESC, []),
    ("F1 (Kivy settings)", F1, []),
    ("F11", F11, []),
    ("F12 (screenshot)", F12, []),
    ("Alt+F4", F4, ["alt"]),
    ("Alt+Tab", TAB, ["alt"]),
    ("Ctrl+Q", Q, ["ctrl"]),
    ("Ctrl+W", W, ["ctrl"]),
    ("Super", 0, ["meta"]),
    ("Ctrl+Alt+F2", 283, ["ctrl", "alt"]),
]


def test_every_listed_key_leaves_the_app_running_on_its_screen() -> None:
    async def scenario(p: Pilot) -> None:
        from kivy.app import App
        from kivy.core.window import Window

        await p.press("start")
        screen = p.app.root_widget.manager.current
        for name, key, mods in KEYS:
            down = Window.dispatch("on_key_down", key, 0, None, mods)
            keyboard = Window.dispatch("on_keyboard", key, 0, None, mods)
            Window.dispatch("on_key_up", key, 0)
            await p.frames(2)
            assert down and keyboard, f"{name} was not swallowed"
            assert App.get_running_app() is p.app, f"{name} stopped the app"
            assert p.state == "notice" and p.app.root_widget.manager.current == screen, name
        assert Window.dispatch("on_request_close") is True, "closing the window must be refused"
        await p.frames(2)
        assert App.get_running_app() is p.app
        assert p.app.open_settings() is False

    asyncio.run(run_booth(scenario))


def test_twin_without_the_guards_the_same_keys_reach_kivy() -> None:
    """Twin: the guards are what stops these keys; Kivy alone would act on them."""
    assert lockdown.swallow_key(None, F4, 0, None, ["alt"]) is True

    async def scenario(p: Pilot) -> None:
        from kivy.core.window import Window

        Window.unbind(on_key_down=lockdown.swallow_key)
        Window.unbind(on_keyboard=lockdown.swallow_key)
        Window.unbind(on_request_close=lockdown.refuse_close)
        try:
            assert not Window.dispatch("on_key_down", F4, 0, None, ["alt"])
            assert not Window.dispatch("on_request_close"), "without the guard Kivy would close"
        finally:
            lockdown.install(Window)

    asyncio.run(run_booth(scenario))


def test_kivy_is_configured_in_code_and_writes_nothing_home(tmp_path: Path) -> None:
    async def scenario(p: Pilot) -> None:
        from kivy.config import Config

        assert Config.get("kivy", "exit_on_escape") == "0"
        assert Config.get("kivy", "log_enable") == "0"
        assert not Config.has_section("modules") or not Config.options("modules")
        assert os.environ["KIVY_NO_CONFIG"] == "1" and os.environ["KIVY_NO_FILELOG"] == "1"

    asyncio.run(run_booth(scenario))
    home = Path(os.environ["KIVY_HOME"])
    assert not (home / "logs").exists() or not any((home / "logs").iterdir())
    assert not (home / "config.ini").exists()


@pytest.mark.parametrize("modifiers", [["shift"], []])
def test_plain_letters_pass_through(modifiers: list[str]) -> None:
    assert lockdown.swallow_key(None, ord("a"), 0, "a", modifiers) is False

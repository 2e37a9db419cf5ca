"""No key or gesture leaves the booth's app.

Kivy's own exits are closed at the source: ``exit_on_escape`` is off in
:mod:`kiosk.ui.boot`, the settings panel (F1) is never built, and every
request to close the window (Alt+F4, the window manager, SDL's quit) is
refused. Keys that compositors or desktops use to switch away (Alt+Tab,
Ctrl+Alt+F-keys) are swallowed here too; on a booth the cage compositor and
the masked ``ctrl-alt-del.target`` take care of the rest.
"""

from __future__ import annotations

from typing import Any

ESCAPE = 27
F1, F12 = 282, 293
TAB = 9
Q, W = ord("q"), ord("w")


def swallow_key(window: Any, key: int, scancode: int, codepoint: Any, modifiers: list[str]) -> bool:
    """Decide whether a key is the booth's to eat. True stops Kivy acting on it."""
    if key == ESCAPE or F1 <= key <= F12:
        return True
    mods = set(modifiers or ())
    if "alt" in mods or "ctrl" in mods or "meta" in mods or "super" in mods:
        return True  # Alt+Tab, Alt+F4, Ctrl+Q, Ctrl+W, Super: none of them are for residents
    return key == TAB


def refuse_close(*_: Any, **__: Any) -> bool:
    """``on_request_close`` handler: True means the window stays."""
    return True


def install(window: Any) -> None:
    """Bind the guards to Kivy's window; first in line so nothing sees the key before us."""
    window.bind(on_request_close=refuse_close)
    window.bind(on_keyboard=swallow_key)
    window.bind(on_key_down=swallow_key)

"""Kivy configured in code, before Kivy is first imported.

Kivy reads ``~/.kivy/config.ini``, writes log files and icons there, parses
``sys.argv`` and loads "modules" (the screenshot key, the inspector) from
its config. A booth must do none of that: whatever a user's home holds, the
booth looks and behaves the same, writes nothing to disk, and offers no key
that leaves or records the screen. Call :func:`configure` once, first.
"""

from __future__ import annotations

import os
import tempfile

from kiosk.config import Display

_done: list[bool] = []  # one entry once configured


def configure(
    display: Display, *, window: bool = True, simulate: bool = False, extra_width: int = 0
) -> None:
    """Set Kivy's environment and config for the booth; idempotent."""
    if _done:
        return
    os.environ["KIVY_NO_ARGS"] = "1"  # never parse the booth's command line as Kivy options
    os.environ["KIVY_NO_FILELOG"] = "1"
    os.environ["KIVY_NO_CONFIG"] = "1"  # ignore any config.ini a user left behind
    os.environ["KIVY_LOG_MODE"] = "PYTHON"  # Kivy logs through our allow-listed handlers
    os.environ.setdefault("KIVY_NO_CONSOLELOG", "1")
    # The booth shows no image files but Kivy's own PNGs, which SDL2 reads; without this Kivy
    # also loads Pillow (about 2 MiB of memory for nothing).
    os.environ.setdefault("KIVY_IMAGE", "sdl2")
    if "KIVY_HOME" not in os.environ:
        # Kivy insists on a home for icons; give it a throwaway one in RAM.
        base = os.environ.get("RUNTIME_DIRECTORY") or tempfile.gettempdir()
        os.environ["KIVY_HOME"] = tempfile.mkdtemp(prefix="kivy-", dir=base)
    if not window and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")

    from kivy.config import Config

    Config.set("kivy", "exit_on_escape", "0")
    Config.set("kivy", "log_enable", "0")
    Config.set("kivy", "keyboard_mode", "system")
    Config.set("kivy", "desktop", "0" if not simulate else "1")
    Config.set("graphics", "width", str(display.width + extra_width))
    Config.set("graphics", "height", str(display.height))
    Config.set("graphics", "resizable", "0")
    Config.set("graphics", "maxfps", str(display.maxfps))
    Config.set("graphics", "show_cursor", "1" if simulate else "0")
    Config.set("graphics", "fullscreen", "0" if simulate or not window else "auto")
    Config.set("graphics", "borderless", "0" if simulate else "1")
    Config.set("input", "mouse", "mouse,disable_multitouch")
    if Config.has_section("modules"):
        for name in Config.options("modules"):
            Config.remove_option("modules", name)
    _done.append(True)

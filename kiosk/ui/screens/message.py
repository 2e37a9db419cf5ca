"""Title, a few plain lines and big buttons: most of a visit's screens."""

from __future__ import annotations

from kiosk.ui.screens import BoothScreen, load_kv

load_kv(__file__)


class MessageScreen(BoothScreen):
    """Notice, door check, check-in choice, waiting, wrap-up, privacy pause, wiping."""

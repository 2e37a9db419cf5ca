"""Self-view and a moving microphone bar, so residents see and hear that it works."""

from __future__ import annotations

from typing import Any

from kivy.properties import NumericProperty, ObjectProperty

from kiosk.ui.screens import BoothScreen, load_kv

load_kv(__file__)


class DeviceCheckScreen(BoothScreen):
    """``frame`` is the latest camera texture; ``level`` the microphone level, 0-1."""

    frame: Any = ObjectProperty(None, allownone=True)
    level = NumericProperty(0.0)

"""What the booth is, and that touching anywhere begins a visit."""

from __future__ import annotations

from typing import Any

from kiosk.presenter import View
from kiosk.ui.look import Look
from kiosk.ui.screens import BoothScreen, OnAction, load_kv
from kiosk.ui.widgets import BoothButton

load_kv(__file__)


class AttractScreen(BoothScreen):
    """A touch outside any button starts the visit, so nobody has to find the button."""

    _start: Any = None
    _on_action: Any = None

    def show_more(self, view: View, look: Look, on_action: OnAction) -> None:
        self._start = view.touch_anywhere
        self._on_action = on_action
        row = self.ids.languages
        row.clear_widgets()
        for action in view.languages:
            row.add_widget(BoothButton(action, look, on_action))

    def on_touch_down(self, touch: Any) -> bool:
        if super().on_touch_down(touch):
            return True
        if self.collide_point(*touch.pos) and self._start is not None and self._on_action:
            self._on_action(self._start)
            return True
        return False

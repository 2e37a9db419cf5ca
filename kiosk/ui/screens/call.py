"""The clinician large, the resident small, and the controls they need."""

from __future__ import annotations

from typing import Any

from kivy.properties import ObjectProperty

from kiosk.presenter import View
from kiosk.ui.look import Look
from kiosk.ui.screens import BoothScreen, OnAction, load_kv
from kiosk.ui.widgets import BoothButton

load_kv(__file__)


class CallScreen(BoothScreen):
    """``remote`` and ``frame`` are the clinician's and the resident's video textures."""

    remote: Any = ObjectProperty(None, allownone=True)
    frame: Any = ObjectProperty(None, allownone=True)

    def show_more(self, view: View, look: Look, on_action: OnAction) -> None:
        # Controls sit in a grid so five targets of 20 mm fit a small screen.
        actions = self.ids.actions
        actions.clear_widgets()
        actions.cols = 2 if look.display.portrait else len(view.actions) or 1
        for action in view.actions:
            actions.add_widget(BoothButton(action, look, on_action))
        self.ids.self_view.opacity = 1 if view.self_view else 0

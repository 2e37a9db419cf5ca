"""A large number pad: appointment codes and the technician PIN."""

from __future__ import annotations

from kiosk.presenter import View
from kiosk.ui.look import Look
from kiosk.ui.screens import BoothScreen, OnAction, load_kv
from kiosk.ui.widgets import BoothButton, text_block

load_kv(__file__)


class KeypadScreen(BoothScreen):
    """Shows what was typed so far (or dots for a PIN) above twelve big keys."""

    def show_more(self, view: View, look: Look, on_action: OnAction) -> None:
        entry = self.ids.entry
        entry.clear_widgets()
        entry.add_widget(text_block(view.entry or " ", look, title=True))
        keys = self.ids.keypad
        keys.clear_widgets()
        for key in view.keys:
            keys.add_widget(BoothButton(key, look, on_action))

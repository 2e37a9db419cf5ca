"""911 and 988, in the resident's language, over everything; no button to dismiss it."""

from __future__ import annotations

from kiosk.presenter import View
from kiosk.ui.look import Look
from kiosk.ui.screens import BoothScreen, OnAction, load_kv

load_kv(__file__)


class EmergencyScreen(BoothScreen):
    """Also the out-of-service screen: both must always show where to get help.

    The title sits on the danger colour so the screen reads as urgent at a
    glance; the words say why, so colour is never the only signal.
    """

    def show_more(self, view: View, look: Look, on_action: OnAction) -> None:
        for label in self.ids.title.children:
            label.color = list(look.rgba("on_danger"))
